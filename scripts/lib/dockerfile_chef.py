"""Runs the cargo-chef and build steps of the Dockerfile as a script in a scratch directory, the way
`docker build` would run them (no Docker engine is needed): for the `planner` and `builder`
stages it replays COPY (from the build context, minus .dockerignore, or from an earlier
stage), WORKDIR and the RUN lines that call cargo, with /app mapped into the scratch
directory. The Dockerfile is parsed, not copied, so this cannot drift from it.

usage: python3 dockerfile_chef.py DOCKERFILE CONTEXT SCRATCH SERVICE [SERVICE ...]
Leaves the release binaries in SCRATCH/bin/<service>.
"""
import fnmatch
import os
import shutil
import subprocess
import sys
import time


def instructions(path):
    """(stage, keyword, argument) for every instruction, continuation lines joined."""
    stage, logical = None, ""
    for raw in open(path):
        line = raw.rstrip("\n")
        if not logical and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        logical += line
        keyword, _, argument = logical.strip().partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            parts = argument.split()
            stage = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
        yield stage, keyword, argument.strip()
        logical = ""


def context_files(context):
    ignore = [p.strip().rstrip("/") for p in open(os.path.join(context, ".dockerignore"))
              if p.strip() and not p.startswith("#")]
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                            cwd=context, capture_output=True, text=True, check=True).stdout.split("\n")
    for rel in filter(None, listed):
        parts = rel.split("/")
        if any(fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(parts[0], p) or fnmatch.fnmatch(parts[-1], p)
               for p in ignore):
            continue
        if os.path.isfile(os.path.join(context, rel)):
            yield rel


def main(dockerfile, context, scratch, services):
    steps = list(instructions(dockerfile))
    stage_dirs = {}
    for service in services:
        print(f"== {service} ==", flush=True)
        for stage in ("planner", "builder"):
            workdir = os.path.join(scratch, stage)
            stage_dirs[stage] = workdir
            fresh = not os.path.isdir(workdir)
            os.makedirs(workdir, exist_ok=True)
            env = dict(os.environ, SERVICE=service)
            for s, keyword, argument in steps:
                if s != stage:
                    continue
                if keyword == "COPY":
                    args = argument.split()
                    if args[0].startswith("--from="):
                        source_stage = args[0].split("=", 1)[1]
                        source = args[1].replace("/app", stage_dirs[source_stage], 1)
                        shutil.copy(source, os.path.join(workdir, args[2]))
                    else:  # COPY . .  from the build context
                        for rel in context_files(context):
                            dest = os.path.join(workdir, rel)
                            os.makedirs(os.path.dirname(dest), exist_ok=True)
                            shutil.copy2(os.path.join(context, rel), dest)
                elif keyword == "RUN" and ("cargo" in argument or "SERVICE" in argument):
                    # a step whose inputs do not name the service is the same for every image:
                    # it runs once, as Docker's layer cache would run it
                    if not fresh and "SERVICE" not in argument:
                        print(f"   (cached) RUN {argument[:80]}", flush=True)
                        continue
                    command = argument.replace("/app", os.path.abspath(scratch))
                    print(f"   RUN {command[:110]}", flush=True)
                    started = time.time()
                    subprocess.run(["bash", "-euo", "pipefail", "-c", command], cwd=workdir, env=env, check=True)
                    print(f"   ok in {time.time() - started:.0f}s", flush=True)
        binary = os.path.join(scratch, "service")
        os.makedirs(os.path.join(scratch, "bin"), exist_ok=True)
        shutil.move(binary, os.path.join(scratch, "bin", service))
        print(f"   → {scratch}/bin/{service} ({os.path.getsize(os.path.join(scratch, 'bin', service)) // 1024} KiB)")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:])
