#!/usr/bin/env python3
"""Writes a .cu file of the CUDA backend as C++ for the host emulator (tests/simt/README.md).

The only change is the launch syntax: `kernel<<<grid, block, shared, stream>>>(args)` becomes
`::dino::simt::Launch(grid, block, shared, stream).run("kernel", [=] { kernel(args); })`. Line breaks are
kept and a #line directive names the original file, so compiler messages point at it.

usage: emulate_cu.py SOURCE.cu OUTPUT.cpp
"""
import os
import re
import sys

# A kernel name, possibly qualified and with one level of template arguments, then the
# launch configuration (which may span lines), then the opening parenthesis of the arguments;
# clang-format may break the line before `<<<`.
LAUNCH = re.compile(r"([A-Za-z_][\w:]*(?:<[^<>;()]*>)?)(\s*)<<<([^;]+?)>>>(\s*)\(")


def closing_paren(text, start):
    """Index of the parenthesis that closes the one just before `start`."""
    depth = 1
    for i in range(start, len(text)):
        if text[i] == "(":
            depth += 1
        elif text[i] == ")":
            depth -= 1
            if depth == 0:
                return i
    raise ValueError("unbalanced parentheses")


def convert(text, source):
    """The launches become `Launch(config).run("kernel", [=] { kernel(args); })`: each emulated thread
    calls the kernel, so template arguments are deduced as nvcc deduces them. The closure holds
    copies of what the arguments name, as a launch copies its parameters, so a captured launch
    (a CUDA graph) still has them when it runs later."""
    out, pos, count = [], 0, 0
    for m in LAUNCH.finditer(text):
        if m.start() < pos:
            continue
        end = closing_paren(text, m.end())
        out.append(text[pos:m.start()])
        breaks = "\n" * (m.group(2) + m.group(4)).count("\n")  # keeps the line numbers
        # In a trace (the CUPTI stand-in) the launch is named by its file and the kernel's text.
        name = f"{os.path.basename(source)}: {' '.join(m.group(1).split())}"
        out.append(f"{breaks}::dino::simt::Launch({m.group(3)}).run(\"{name}\", [=] {{ "
                   f"{m.group(1)}({text[m.end():end]}); }})")
        pos = end + 1
        count += 1
    out.append(text[pos:])
    result = "".join(out)
    if "<<<" in result:
        line = result[: result.index("<<<")].count("\n") + 1
        sys.exit(f"emulate_cu.py: a kernel launch at line {line} has a form this script does not know")
    return result, count


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    source, output = sys.argv[1], sys.argv[2]
    with open(source, encoding="utf-8") as f:
        text, _ = convert(f.read(), source)
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    tmp = output + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(f'#line 1 "{source}"\n{text}')
    os.replace(tmp, output)


if __name__ == "__main__":
    main()
