# Tests of the files other programs read and write (included from CMakeLists.txt under
# BUILD_TESTING): `dino embed` against tools/load_export.py in plain PyTorch (Debian's torch
# under /usr/bin/python3; exit 77, skipped, without it or without Fashion-MNIST).
add_test(NAME interop_embed_vs_pytorch
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/tests/interop/embed_vs_pytorch.py
                 $<TARGET_FILE:dino_cli>)
set_tests_properties(interop_embed_vs_pytorch PROPERTIES LABELS interop SKIP_RETURN_CODE 77 TIMEOUT 300
                     ENVIRONMENT OMP_NUM_THREADS=1)
