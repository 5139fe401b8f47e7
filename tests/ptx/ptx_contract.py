#!/usr/bin/env python3
"""ptx_contract.py: checks that nvcc's PTX for the CUDA kernels keeps the
determinism contract's floating-point rules (docs/determinism.md, docs/gpu.md).

The host emulation (tests/cuemu) runs the kernels' sources with g++; what it
cannot see is what nvcc makes of them. This reads the PTX nvcc wrote with the
build's own flags and refuses every instruction that could round differently
from the C reference:

  ftz        any .ftz modifier (subnormals flushed; the CPU keeps them)
  approx     any .approx or .full modifier (approximate div/rcp/sqrt)
  transc     ex2, lg2, sin, cos, tanh, rsqrt (the contract has its own exp/sin/cos)
  contract   a float add/sub/mul without .rn: the PTX ISA lets ptxas fuse such
             a mul and add into one fma ("mul/add sequences with no rounding
             modifiers may be optimized to use fused-multiply-add"); with .rn
             it may not. nvcc writes .rn only under -fmad=false.
  mad        a float mad (a fused multiply-add the source did not ask for)
  rounding   a float fma/div/sqrt/rcp whose rounding is not .rn
  atomic     a float atom/red or other reduction (the order of the additions
             is the scheduler's)
  mma        a float (w)mma/wgmma: the tensor cores' own summation order

Usage:
  ptx_contract.py [--require FILE_STEM=OPCODE ...] PTX...
      exit 0 when every file is clean, 1 with one line per violation
  ptx_contract.py --fatbin auto|CUOBJDUMP --archs ARCHS [--toolkit-bin DIR]
                  [--require ...] FILE...
      FILE (a library or an executable with CUDA code) carries what ARCHS
      (CMake's CUDA_ARCHITECTURES, ';' or ',' between entries) asks for: per
      object one cubin for each entry that is not -virtual and PTX for each
      that is not -real, nothing else (native, all, all-major: the same
      cubins in every object); the PTX embedded in a library keeps the rules,
      and every kernel of its cubins fits its largest block on the device:
      registers (rounded up to the allocation unit of 8 per thread) times
      the block size of its __launch_bounds__ (the cubin's
      EIATTR_MAX_THREADS; without one, 1024 threads, the most a launch may
      ask for) at most 65536, the
      register file a block may use on sm_75 to sm_90; otherwise the launch
      fails on a GPU with "too many resources requested", which no host
      emulation sees. Every kernel but CUB's must have __launch_bounds__
      auto looks in DIR, PATH and pip's nvidia packages and exits 77 (ctest:
      skipped) when it finds no cuobjdump
  ptx_contract.py --find-cuobjdump [--toolkit-bin DIR]
      prints the cuobjdump auto would use; exit 1 when there is none
  ptx_contract.py --self-test NVCC SOURCE.cu [-I DIR ...]
      checks the checker: hand-written bad instructions must each be refused,
      and SOURCE.cu compiled by NVCC without -fmad=false, and with
      --use_fast_math, must fail the check while the contract flags pass it;
      fat archives nvcc builds must fail for architectures they lack (exit 77
      when that part has no cuobjdump)
"""
import glob
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile

FLOAT_TYPES = ("f16", "f16x2", "bf16", "bf16x2", "f32", "f32x2", "f64")
TRANSCENDENTAL = ("ex2", "lg2", "sin", "cos", "tanh", "rsqrt")
CONTRACT_FLAGS = ["-fmad=false", "-prec-div=true", "-prec-sqrt=true", "-ftz=false"]


def instructions(text):
    """(line number, opcode with modifiers) of every instruction in PTX text,
    also several on one line and inside inline-asm braces ({ cvt...; })."""
    # block comments go, their newlines stay (line numbers)
    text = re.sub(r"/\*.*?\*/", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)
    for n, line in enumerate(text.splitlines(), 1):
        for stmt in re.split(r"[;{}]", line.split("//", 1)[0]):
            s = stmt.strip()
            if not s or s.startswith((".", ")", "(")):
                continue
            s = re.sub(r"^\$?[A-Za-z_][\w$]*:\s*", "", s)  # label
            s = re.sub(r"^@!?%?[\w$]+\s+", "", s)  # predicate guard (@%p1, @!p)
            if not s or not re.match(r"[a-z]", s):
                continue
            yield n, re.split(r"\s", s, maxsplit=1)[0]


def violation(op):
    """The rule op breaks, or None."""
    parts = op.split(".")
    name, mods = parts[0], parts[1:]
    is_float = any(m in FLOAT_TYPES for m in mods)
    if "ftz" in mods:
        return "ftz"
    if "approx" in mods or "full" in mods:
        return "approx"
    if name in TRANSCENDENTAL:
        return "transc"
    if not is_float:
        return None
    if name in ("atom", "red") or "add" in mods or "red" in mods or "reduce" in mods:
        return "atomic"  # also multimem.red, cp.reduce.async.bulk ... .add.f32
    if name in ("mma", "wmma", "wgmma", "tcgen05"):
        return "mma"  # float tensor-core sums: order and rounding are the hardware's
    if name == "mad":
        return "mad"
    if name in ("add", "sub", "mul") and "rn" not in mods:
        return "contract"
    if name in ("fma", "div", "sqrt", "rcp") and "rn" not in mods:
        return "rounding"
    return None


def check_text(text, label, ops=None):
    """Violation lines for one PTX text; counts of entries and float ops.
    ops (a set), when given, receives every opcode seen."""
    bad, float_ops = [], 0
    entries = len(re.findall(r"^\s*(?:\.visible\s+)?\.entry\s", text, re.M))
    for n, op in instructions(text):
        rule = violation(op)
        if rule:
            bad.append(f"{label}:{n}: {op}: {rule}")
        parts = op.split(".")
        if parts[0] in ("add", "sub", "mul", "fma", "div") and any(m in FLOAT_TYPES for m in parts[1:]):
            float_ops += 1
        if ops is not None:
            ops.add(op)
    return bad, entries, float_ops


def check_files(paths, required, labels=None):
    """Checks PTX files; labels (path -> name) name them in the output."""
    problems, total_float = [], 0
    seen = set()
    for path in paths:
        label = (labels or {}).get(path, os.path.relpath(path))
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
        ops = set()
        bad, entries, float_ops = check_text(text, label, ops)
        problems += bad
        total_float += float_ops
        stem = os.path.basename(label).split(".")[0]
        seen.add(stem)
        if entries == 0 and stem != "common":
            problems.append(f"{label}: no kernel entry in the PTX")
        for want_stem, want_op in required:
            if want_stem == stem and want_op not in ops:
                problems.append(f"{label}: expected instruction {want_op} is missing")
        target = re.search(r"^\s*\.target\s+(\w+)", text, re.M)
        print(f"{label}: {'clean' if not bad else f'{len(bad)} violation(s)'}, "
              f"{entries} kernel(s), {float_ops} float add/sub/mul/fma/div, "
              f"target {target.group(1) if target else '?'}")
    for want_stem, want_op in required:
        if want_stem not in seen:
            problems.append(f"no PTX for {want_stem} (expected {want_op})")
    if paths and total_float == 0:
        problems.append("no float arithmetic at all: not the kernels' PTX?")
    return problems


def find_cuobjdump(toolkit_bin=None):
    """cuobjdump from the CUDA toolkit, PATH, or pip's nvidia-cuda-cuobjdump
    (nvidia/cu*/bin), or None."""
    candidates = [os.path.join(toolkit_bin, "cuobjdump")] if toolkit_bin else []
    candidates.append(shutil.which("cuobjdump") or "")
    try:
        spec = importlib.util.find_spec("nvidia")
    except (ImportError, ValueError):
        spec = None
    for d in (spec.submodule_search_locations if spec and spec.submodule_search_locations else []):
        candidates += sorted(glob.glob(os.path.join(d, "cu*", "bin", "cuobjdump")), reverse=True)
    for c in candidates:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    return None


def cuobjdump_lines(cuobjdump, option, path):
    """(member, arch, line) for each line of cuobjdump's output for option on
    path, with the archive member ('' outside an archive) and the last
    "arch = sm_X" seen; RuntimeError when cuobjdump fails."""
    r = subprocess.run([cuobjdump, option, path], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"cuobjdump {option} {path}: {(r.stderr or r.stdout).strip()}")
    member, arch = "", "?"
    for line in r.stdout.splitlines():
        m = re.match(r"member .*:([^:]+):$", line)
        if m:
            member = m.group(1)
        m = re.match(r"\s*arch = sm_(\w+)", line)
        if m:
            arch = m.group(1)
        yield member, arch, line


def fatbin_listing(cuobjdump, path):
    """[(member, kind, arch, name)] of the device code cuobjdump lists in path
    (member is the archive member, or '' for an executable or object)."""
    entries = []
    for member, _, line in list(cuobjdump_lines(cuobjdump, "-lelf", path)) + \
            list(cuobjdump_lines(cuobjdump, "-lptx", path)):
        m = re.match(r"(PTX|ELF) file\s+\d+: (\S+)$", line)
        if m:
            arch = re.search(r"\.sm_(\d+[a-z]?)\.(?:ptx|cubin)$", m.group(2))
            entries.append((member, m.group(1), arch.group(1) if arch else "?", m.group(2)))
    return entries


def arch_key(a):
    """Sort key of an architecture name such as 90 or 90a."""
    m = re.match(r"(\d+)", a)
    return (int(m.group(1)) if m else 0, a)


def parse_archs(value):
    """CMake's CUDA_ARCHITECTURES list ("75;80-real;90a-virtual") as
    (cubin archs, PTX archs), or None for names without a fixed list
    (native, all, all-major)."""
    cubins, ptx = set(), set()
    for entry in (x for x in re.split(r"[,;]", value) if x):
        m = re.fullmatch(r"(\d+[af]?)(-real|-virtual)?", entry)
        if not m:
            return None
        if m.group(2) != "-virtual":
            cubins.add(m.group(1))
        if m.group(2) != "-real":
            ptx.add(m.group(1))
    return sorted(cubins, key=arch_key), sorted(ptx, key=arch_key)


MAX_BLOCK_THREADS = 1024  # a launch's most threads per block (sm_75 .. sm_90)
BLOCK_REGISTERS = 65536  # the registers one block may use (sm_75 .. sm_90)
REG_UNIT = 8  # registers per thread are allocated in steps of 8 (256 per warp)
FOREIGN_KERNELS = ("_ZN3cub",)  # CUB's kernels: their bounds are CUB's business


def block_sizes(cuobjdump, path):
    """{(member, arch): {kernel: threads}}: the block size each kernel of
    each cubin in path was compiled for (__launch_bounds__, the ELF's
    EIATTR_MAX_THREADS); a kernel without one is absent."""
    sizes, kernel, attr = {}, None, None
    for member, arch, line in cuobjdump_lines(cuobjdump, "-elf", path):
        m = re.match(r"\.nv\.info\.(\S+)$", line)
        if m:
            kernel = m.group(1)
            continue
        if not line.startswith("\t") and line.strip():
            kernel = None  # another section
        m = re.match(r"\s*Attribute:\s*(\w+)", line)
        if m:
            attr = m.group(1)
            continue
        m = re.match(r"\s*Value:\s*(0x[0-9a-f]+)\s+(0x[0-9a-f]+)\s+(0x[0-9a-f]+)", line)
        if m and kernel and attr == "EIATTR_MAX_THREADS":
            n = int(m.group(1), 16) * int(m.group(2), 16) * int(m.group(3), 16)
            sizes.setdefault((member, arch), {})[kernel] = n
    return sizes


def resource_usage(cuobjdump, path):
    """[(member, arch, kernel, registers, stack + local bytes)] of every kernel
    in the cubins of path (cuobjdump --dump-resource-usage)."""
    rows, kernel = [], None
    for member, arch, line in cuobjdump_lines(cuobjdump, "--dump-resource-usage", path):
        m = re.match(r"\s*Function ([^:\s]+):", line)
        if m:
            kernel = m.group(1)
        m = re.search(r"REG:(\d+) STACK:(\d+).*\bLOCAL:(\d+)", line)
        if m and kernel:
            rows.append((member, arch, kernel, int(m.group(1)), int(m.group(2)) + int(m.group(3))))
            kernel = None
    return rows


def block_registers(regs, threads):
    """Registers a block of threads with regs each takes from the register file."""
    warps = -(-threads // 32)
    return warps * 32 * (-(-regs // REG_UNIT) * REG_UNIT)


def short_names(kernels):
    """{mangled: readable} (c++filt when there is one, without parameters)."""
    names = {k: k for k in kernels}
    try:
        r = subprocess.run(["c++filt"], input="\n".join(kernels), capture_output=True, text=True)
        out = r.stdout.splitlines() if r.returncode == 0 else []
    except OSError:
        out = []
    for k, d in zip(kernels, out if len(out) == len(kernels) else []):
        d = re.sub(r"^void ", "", d.replace("(anonymous namespace)::", ""))
        d = re.sub(r"\([^()]*\)$", "", d)
        scope = d.split("<", 1)[0]
        if "::" in scope:  # cub::CUB_300001_SM_750_...::detail::radix_sort::X<...> -> X<...>
            d = d[len(scope.rsplit("::", 1)[0]) + 2:]
        names[k] = d if len(d) <= 60 else d[:57] + "..."
    return names


def check_resources(usage, sizes, where):
    """Problems of usage (resource_usage rows of one file) given sizes
    (block_sizes of the same file); prints one line per member."""
    problems = []
    names = short_names(sorted({u[2] for u in usage}))
    for member in sorted({u[0] for u in usage}):
        rows = [u for u in usage if u[0] == member]
        worst, spills, bounded = None, [], 0
        for _, arch, kernel, regs, local in rows:
            bounds = sizes.get((member, arch), {})
            bounded += kernel in bounds
            threads = bounds.get(kernel, MAX_BLOCK_THREADS)
            need = block_registers(regs, threads)
            if worst is None or need > worst[0]:
                worst = (need, kernel, arch, regs, threads)
            label = f"{where}:{member}" if member else where
            if need > BLOCK_REGISTERS:
                how = "its __launch_bounds__" if kernel in bounds else "no __launch_bounds__, so up to"
                problems.append(f"{label}: {names[kernel]} ({kernel}) on sm_{arch}: {regs} registers x "
                                f"{threads} threads ({how}) = {need} > {BLOCK_REGISTERS}: "
                                f"such a launch fails on the GPU")
            if kernel not in bounds and not kernel.startswith(FOREIGN_KERNELS):
                problems.append(f"{label}: {names[kernel]} ({kernel}) on sm_{arch}: no __launch_bounds__ "
                                f"(every opg kernel states its block size, so ptxas keeps its registers "
                                f"within it and the emulation checks each launch against it)")
            if local:
                spills.append(f"{names[kernel]} sm_{arch} {local} B")
        need, kernel, arch, regs, threads = worst
        print(f"{where}{':' + member if member else ''}: {len(rows)} kernel cubins, "
              f"{bounded} with __launch_bounds__; most registers per block "
              f"{need} of {BLOCK_REGISTERS} ({names[kernel]}, sm_{arch}: {regs} x {threads} threads)"
              + (f"; {len(spills)} with stack/local memory, e.g. {', '.join(spills[:2])}" if spills else ""))
    return problems


def check_fatbin(cuobjdump, paths, archs, required):
    """Every file (per archive member) carries one cubin for each real
    architecture and PTX for each virtual one, as archs (parse_archs) asks;
    with archs None, the same cubins in every member. An archive's embedded
    PTX must also keep the contract."""
    problems = []
    for path in paths:
        listing = fatbin_listing(cuobjdump, path)
        if not listing:
            problems.append(f"{path}: no device code")
            continue
        members = sorted({m for m, _, _, _ in listing})
        first_set = None
        for member in members:
            where = f"{os.path.basename(path)}{':' + member if member else ''}"
            elf = [a for m, k, a, _ in listing if m == member and k == "ELF"]
            ptx = sorted({a for m, k, a, _ in listing if m == member and k == "PTX"}, key=arch_key)
            have = sorted(set(elf), key=arch_key)
            counts = {a: elf.count(a) for a in have}
            if archs is not None:
                want_elf, want_ptx = archs
                if have != want_elf or len(set(counts.values())) > 1:
                    problems.append(f"{where}: cubins {counts or 'none'}, expected the same number "
                                    f"for each of {want_elf} and no other")
                if ptx != want_ptx:
                    problems.append(f"{where}: PTX for {ptx or 'none'}, expected {want_ptx}")
            else:
                first_set = have if first_set is None else first_set
                if not have or have != first_set:
                    problems.append(f"{where}: cubins {counts or 'none'}, expected {first_set} as in "
                                    f"the other objects")
            print(f"{where}: cubins {' '.join(f'sm_{a}x{counts[a]}' for a in have) or 'none'}, "
                  f"PTX {' '.join(ptx) or 'none'}")
        if not any(members):
            continue  # an executable: the listing is what is checked
        with tempfile.TemporaryDirectory() as tmp:
            r = subprocess.run([cuobjdump, "-xptx", "all", os.path.abspath(path)],
                               cwd=tmp, capture_output=True, text=True)
            if r.returncode != 0:
                problems.append(f"cuobjdump -xptx all {path}: {r.stderr.strip()}")
                continue
            labels = {os.path.join(tmp, name): f"{member} ({name})"
                      for member, kind, _, name in listing if kind == "PTX"}
            if not labels:
                print(f"{path}: no PTX embedded, so no instruction to check")
            missing = [p for p in labels if not os.path.exists(p)]
            if missing:
                problems.append(f"{path}: cuobjdump did not extract {missing[:3]}")
                continue
            order = {os.path.join(tmp, n): (m, arch_key(a)) for m, k, a, n in listing if k == "PTX"}
            problems += check_files(sorted(labels, key=order.get), required, labels)
        problems += check_resources(resource_usage(cuobjdump, path), block_sizes(cuobjdump, path),
                                    os.path.basename(path))
    return problems


def self_test(nvcc, source, includes):
    """(failures, whether the fat-binary part was skipped for want of cuobjdump)"""
    failures = []
    # every rule refuses its instruction, and the sound forms pass
    cases = {
        "add.f32": "contract", "mul.f64": "contract", "sub.f32": "contract",
        "mul.ftz.f32": "ftz", "fma.rn.ftz.f32": "ftz", "cvt.rzi.ftz.s32.f32": "ftz",
        "setp.lt.ftz.f32": "ftz", "div.approx.ftz.f32": "ftz", "div.approx.f32": "approx",
        "div.full.f32": "approx", "sqrt.approx.f32": "approx", "rcp.approx.f64": "approx",
        "ex2.approx.f32": "approx", "lg2.approx.f32": "approx", "ex2.f32": "transc",
        "sin.f32": "transc", "cos.f32": "transc", "tanh.f32": "transc", "rsqrt.f64": "transc",
        "mad.f32": "mad", "mad.rn.f32": "mad", "fma.rz.f32": "rounding",
        "div.rz.f32": "rounding", "sqrt.rp.f32": "rounding",
        "atom.global.add.f32": "atomic", "red.shared.add.f32": "atomic",
        "atom.global.add.noftz.f16": "atomic", "multimem.red.relaxed.sys.global.add.f32": "atomic",
        "cp.reduce.async.bulk.global.shared::cta.bulk_group.add.f32": "atomic",
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32": "mma",
        "wmma.mma.sync.aligned.row.col.m16n16k16.f32.f16.f16.f32": "mma",
        "wmma.mma.sync.aligned.row.col.m16n16k16.s32.s8.s8.s32": None, "add.rn.f32x2": None,
        "add.rn.f32": None, "mul.rn.f64": None, "fma.rn.f32": None, "div.rn.f32": None,
        "sqrt.rn.f32": None, "rcp.rn.f32": None, "mad.lo.s32": None, "add.s32": None,
        "atom.global.add.u32": None, "cvt.rn.f32.s32": None, "setp.gt.f32": None,
        "dp4a.s32.s32": None, "mov.f32": None, "ld.global.nc.f32": None,
    }
    for op, want in cases.items():
        got = violation(op)
        if got != want:
            failures.append(f"rule table: {op} gives {got}, expected {want}")
    # the parser finds guarded and labelled instructions, skips directives
    sample = ("\t.visible .entry k(\n\t.param .u64 p\n)\n{\n\t.reg .f32 %f<4>;\n"
              "$L__BB0_1:\n\t@%p1 add.f32 %f1, %f2, %f3;\n\t@!%p2 bra $L__BB0_1;\n"
              "\tmul.rn.f32 %f1, %f1, %f2; // mul.f32 in a comment\n"
              "\t{ .reg .b16 %t; cvt.f32.f16 %f3, %rs1; sub.f32 %f3, %f3, %f1;}\n"
              "\t@p mul.f32 %f1, %f1, %f1; add.rn.f32 %f2, %f2, %f2; /* add.f32\n"
              "sub.f32 */ @!p div.full.f32 %f1, %f1, %f2;\n\tret;\n}\n")
    bad, entries, float_ops = check_text(sample, "sample")
    want = ["sample:7: add.f32: contract", "sample:10: sub.f32: contract",
            "sample:11: mul.f32: contract", "sample:12: div.full.f32: approx"]
    if bad != want or entries != 1 or float_ops != 6:
        failures.append(f"parser: got {bad}, {entries} entries, {float_ops} float ops")
    # real nvcc output: the contract flags pass, without them it fails
    with tempfile.TemporaryDirectory() as tmp:
        base = [nvcc, "-ptx", "-arch=compute_75", "-std=c++17", "-O3"]
        base += [a for d in includes for a in ("-I", d)]
        variants = {
            "contract flags": (CONTRACT_FLAGS, True),
            "default -fmad=true": (["-prec-div=true", "-prec-sqrt=true", "-ftz=false"], False),
            # alone: nvcc lets explicit contract flags override its parts
            "--use_fast_math": (["--use_fast_math"], False),
        }
        for name, (flags, should_pass) in variants.items():
            out = os.path.join(tmp, name.replace(" ", "_").replace("=", "_") + ".ptx")
            r = subprocess.run(base + flags + [source, "-o", out], capture_output=True, text=True)
            if r.returncode != 0:
                failures.append(f"nvcc ({name}) failed: {r.stderr.strip()[:400]}")
                continue
            with open(out, encoding="utf-8") as f:
                bad, _, _ = check_text(f.read(), name)
            print(f"self-test: {os.path.basename(source)} with {name}: {len(bad)} violation(s)"
                  + (f", e.g. {bad[0]}" if bad else ""))
            if should_pass and bad:
                failures.append(f"{name}: expected clean, got {bad[:3]}")
            if not should_pass and not bad:
                failures.append(f"{name}: expected violations, the check passed it")
        fat = self_test_fatbin(nvcc, source, includes, tmp)
    return failures + (fat or []), fat is None


def self_test_fatbin(nvcc, source, includes, tmp):
    """The fat-binary checks fail where they should, on archives nvcc built."""
    cuobjdump = find_cuobjdump(os.path.dirname(nvcc))
    if cuobjdump is None:
        return None  # skipped
    failures = []
    both = ["-gencode", "arch=compute_75,code=sm_75", "-gencode", "arch=compute_90,code=[sm_90,compute_90]"]
    builds = {
        "fat75_90": CONTRACT_FLAGS + both,
        "noptx": CONTRACT_FLAGS + ["-gencode", "arch=compute_75,code=sm_75",
                                   "-gencode", "arch=compute_90,code=sm_90"],
        "fast": ["--use_fast_math"] + both,
    }
    libs = {}
    for name, flags in builds.items():
        obj, lib = os.path.join(tmp, f"{name}.o"), os.path.join(tmp, f"lib{name}.a")
        cmd = [nvcc, "-c", "-std=c++17", "-O3"] + [a for d in includes for a in ("-I", d)]
        r = subprocess.run(cmd + flags + [source, "-o", obj], capture_output=True, text=True)
        if r.returncode != 0 or subprocess.run(["ar", "rcs", lib, obj]).returncode != 0:
            failures.append(f"building {name} failed: {r.stderr.strip()[:400]}")
            continue
        libs[name] = lib
    cases = [  # (library, CMake architectures, a phrase the problems must hold, or None for none)
        ("fat75_90", "75-real;90", None),
        ("fat75_90", "75;90", "PTX for"),
        ("fat75_90", "75-real;80-real;90", "cubins"),
        ("fat75_90", "75-real", "cubins"),
        ("noptx", "75-real;90", "PTX for"),
        ("noptx", "native", None),
        ("fast", "75-real;90", ": ftz"),
    ]
    # registers: a kernel that keeps 256 loads live takes ~127 registers; unbounded
    # it may be launched with 1024 threads (too many), bounded ptxas caps it at 64
    heavy = os.path.join(tmp, "heavy.cu")
    with open(heavy, "w", encoding="utf-8") as f:
        f.write("__global__ void BOUNDS heavy(float *p) {\n    float a[256];\n#pragma unroll\n"
                "    for (int i = 0; i < 256; i++) a[i] = p[i * 1024 + threadIdx.x];\n"
                "    float s = 0.0f;\n#pragma unroll\n"
                "    for (int i = 0; i < 256; i++) s = s + a[i] * a[(i * 7) % 256];\n"
                "    p[threadIdx.x] = s;\n}\n")
    for name, bounds in (("unbounded", ""), ("bounded", "__launch_bounds__(1024)")):
        obj, lib = os.path.join(tmp, f"{name}.o"), os.path.join(tmp, f"lib{name}.a")
        r = subprocess.run([nvcc, "-c", "-O3", f"-DBOUNDS={bounds}", "-gencode",
                            "arch=compute_75,code=[sm_75,compute_75]"] + CONTRACT_FLAGS + [heavy, "-o", obj],
                           capture_output=True, text=True)
        if r.returncode != 0 or subprocess.run(["ar", "rcs", lib, obj]).returncode != 0:
            failures.append(f"building {name} failed: {r.stderr.strip()[:400]}")
            continue
        libs[name] = lib
    cases += [("unbounded", "75", "such a launch fails"), ("bounded", "75", None)]
    if block_registers(71, 1024) != 73728 or block_registers(64, 1000) != 65536:
        failures.append("block_registers: wrong")
    if parse_archs("90a-virtual;75") != (["75"], ["75", "90a"]) or parse_archs("all-major") is not None:
        failures.append(f"parse_archs: {parse_archs('90a-virtual;75')}, {parse_archs('all-major')}")
    for name, archs, phrase in cases:
        if name not in libs:
            continue
        problems = check_fatbin(cuobjdump, [libs[name]], parse_archs(archs), [])
        ok = not problems if phrase is None else any(phrase in p for p in problems)
        print(f"self-test: fat binary {name} for {archs}: "
              f"{len(problems)} problem(s){', as expected' if ok else ''}")
        if not ok:
            failures.append(f"fat binary {name} for {archs}: expected "
                            f"{'none' if phrase is None else repr(phrase)}, got {problems[:3]}")
    return failures


def main(argv):
    if argv[:1] in (["-h"], ["--help"]):
        print(__doc__)
        return 0
    if len(argv) >= 3 and argv[0] == "--self-test":
        includes, rest = [], argv[3:]
        while rest:
            if rest[0] == "-I" and len(rest) > 1:
                includes.append(rest[1])
                rest = rest[2:]
            else:
                print(f"ptx_contract: unknown argument {rest[0]}", file=sys.stderr)
                return 2
        failures, fat_skipped = self_test(argv[1], argv[2], includes)
        for f in failures:
            print(f"FAIL: {f}")
        if not failures and fat_skipped:
            print("skipped: no cuobjdump for the fat-binary part (the rest passed)")
            return 77
        print("self-test " + ("failed" if failures else "passed"))
        return 1 if failures else 0
    required, paths, fatbin, archs, toolkit_bin = [], [], None, None, None
    it = iter(argv)
    for a in it:
        if a in ("--require", "--fatbin", "--archs", "--toolkit-bin"):
            value = next(it, None)
            if value is None:
                print(f"ptx_contract: {a} needs a value (see --help)", file=sys.stderr)
                return 2
            if a == "--require":
                if "=" not in value:
                    print("ptx_contract: --require takes FILE_STEM=OPCODE", file=sys.stderr)
                    return 2
                required.append(tuple(value.split("=", 1)))
            elif a == "--fatbin":
                fatbin = value
            elif a == "--toolkit-bin":
                toolkit_bin = value
            else:
                archs = value
        elif a == "--find-cuobjdump":
            fatbin = "find"
        else:
            paths.append(a)
    if fatbin == "find":
        found = find_cuobjdump(toolkit_bin)
        print(found or "ptx_contract: no cuobjdump found")
        return 0 if found else 1
    if not paths:
        print("ptx_contract: no files given (see --help)", file=sys.stderr)
        return 2
    if fatbin is not None:
        if not archs:
            print("ptx_contract: --fatbin needs --archs", file=sys.stderr)
            return 2
        cuobjdump = find_cuobjdump(toolkit_bin) if fatbin == "auto" else fatbin
        if fatbin == "auto" and not cuobjdump:
            # ctest's skip code; scripts/deps.sh installs it where nvcc is
            print("skipped: no cuobjdump (the CUDA toolkit's, or pip's nvidia-cuda-cuobjdump)")
            return 77
        if not os.path.isfile(cuobjdump):
            print(f"ptx_contract: no cuobjdump at {cuobjdump}", file=sys.stderr)
            return 2
        parsed = parse_archs(archs)
        print(f"cuobjdump: {cuobjdump}; architectures {archs}"
              + ("" if parsed else ": no fixed list, so every object must carry the same cubins"))
        try:
            problems = check_fatbin(cuobjdump, paths, parsed, required)
        except RuntimeError as e:
            problems = [str(e)]
    else:
        problems = check_files(paths, required)
    for p in problems:
        print(f"FAIL: {p}")
    print(f"{len(paths)} file(s): " + ("contract kept" if not problems else f"{len(problems)} problem(s)"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
