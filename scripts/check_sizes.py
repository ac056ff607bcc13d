#!/usr/bin/env python3
"""Lists source files over 450 lines and functions over 80 lines (outside unit-test modules)."""
import os, re, sys
root = sys.argv[1] if len(sys.argv) > 1 else "src"
FILE_MAX, FN_MAX = 450, 80
bad = 0
for dp, _, fns in os.walk(root):
    for fn in sorted(fns):
        if not fn.endswith(".rs"): continue
        p = os.path.join(dp, fn)
        lines = open(p).read().split("\n")
        # stop at the unit-test module
        end = len(lines)
        for i, l in enumerate(lines):
            if re.match(r"\s*#\[cfg\(test\)\]", l) and i + 1 < len(lines) and re.match(r"\s*mod tests", lines[i+1]):
                end = i; break
        if len(lines) > FILE_MAX:
            print(f"{p}: {len(lines)} lines"); bad += 1
        i = 0
        while i < end:
            m = re.match(r"\s*(pub(\([^)]*\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?fn\s+(\w+)", lines[i])
            if m and not lines[i].rstrip().endswith(";"):
                depth = 0; started = False; j = i
                while j < end:
                    s = re.sub(r'"(\\.|[^"\\])*"', '""', lines[j])
                    s = re.sub(r"'(\\.|[^'\\])'", "''", s)
                    s = s.split("//")[0]
                    for ch in s:
                        if ch == "{": depth += 1; started = True
                        elif ch == "}": depth -= 1
                    if started and depth <= 0: break
                    if not started and s.rstrip().endswith(";"): break
                    j += 1
                n = j - i + 1
                if started and n > FN_MAX:
                    print(f"{p}:{i+1}: fn {m.group(6)} is {n} lines"); bad += 1
                i = j + 1 if started else i + 1
            else:
                i += 1
print(f"{bad} over the limits")
sys.exit(1 if bad else 0)
