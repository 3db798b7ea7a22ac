# Tests of the files other programs read and write (included from CMakeLists.txt under
# BUILD_TESTING), against Debian's torch under /usr/bin/python3 (exit 77, skipped, without it):
# `dino embed` against tools/load_export.py in plain PyTorch on a Fashion-MNIST checkpoint
# (skipped without Fashion-MNIST), and `dino import` of DINO- and timm-named weights made by the
# PyTorch ViT of the training cross-check (tests/reference/dino_reference.py).
foreach(check embed_vs_pytorch import_vs_pytorch)
  add_test(NAME interop_${check}
           COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/tests/interop/${check}.py
                   $<TARGET_FILE:dino_cli>)
  set_tests_properties(interop_${check} PROPERTIES LABELS interop SKIP_RETURN_CODE 77 TIMEOUT 300
                       ENVIRONMENT OMP_NUM_THREADS=1)
endforeach()
# The CUDA path of `dino embed`, on the host emulator (tests/simt), against the CPU.
if(TARGET dino_simt_cli)
  add_test(NAME "simt: dino embed"
           COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/tests/interop/embed_cuda_vs_cpu.sh $<TARGET_FILE:dino_cli>
                   $<TARGET_FILE:dino_simt_cli>)
  set_tests_properties("simt: dino embed" PROPERTIES LABELS simt TIMEOUT 300)
endif()
