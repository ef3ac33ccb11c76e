"""Browser tests: the gradio demo served on 127.0.0.1, driven by Debian's chromium through Python playwright.

The browser is the system ``/usr/bin/chromium`` (``scripts/setup_browser_tests.sh`` installs it and playwright);
playwright never downloads a browser. Without chromium or playwright the tests are skipped, unless the
environment variable ``MAST3R_REQUIRE_BROWSER`` is set (``scripts/test.sh`` sets it), in which case they fail.

The served model is the synthetic ``OracleModel`` (ground-truth pointmaps and descriptors of a rendered scene),
identified by image content, so the pipeline runs end to end with real geometry in a few seconds.
"""
import os
import shutil
import socket
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("MAST3R_CHROMIUM", "/usr/bin/chromium")
OUTPUT = Path(__file__).resolve().parents[1] / "output"
SCREENSHOTS = OUTPUT / "screenshots"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-dev-shm-usage", "--enable-unsafe-swiftshader", "--use-angle=swiftshader",
                 "--no-first-run", "--disable-extensions"]
SCENE_SIZE = (64, 48)  # (W, H): multiples of 16, loaded unresized with --image_size 64


def pytest_configure(config):
    config.addinivalue_line("markers", "browser: drives the demo in a headless chromium (playwright)")


def _missing_browser() -> str:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "python playwright is not installed (bash scripts/setup_browser_tests.sh)"
    if not os.path.exists(CHROMIUM):
        return f"{CHROMIUM} not found (bash scripts/setup_browser_tests.sh installs Debian's chromium)"
    return ""


@pytest.fixture(scope="session")
def browser():
    """A headless chromium (session-wide)."""
    why = _missing_browser()
    if why:
        if os.environ.get("MAST3R_REQUIRE_BROWSER"):
            pytest.fail(f"MAST3R_REQUIRE_BROWSER is set but {why}")
        pytest.skip(why)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


class CountingModel:
    """Wraps a model and counts forward calls (to check that display changes do not rerun the network)."""

    def __init__(self, model):
        self.model, self.calls = model, 0
        self.patch_embed = getattr(model, "patch_embed", None)

    def __getattr__(self, name):
        return getattr(self.model, name)

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.model(*args, **kwargs)


@pytest.fixture(scope="module")
def synthetic_images(tmp_path_factory):
    from dust3r.utils.synthetic import make_scene

    scene = make_scene(n_views=3, height=SCENE_SIZE[1], width=SCENE_SIZE[0], seed=3)
    folder = tmp_path_factory.mktemp("upload_src")
    return scene, scene.save_images(folder)


@pytest.fixture(scope="module")
def demo_server(synthetic_images, tmp_path_factory):
    """The MASt3R demo on 127.0.0.1:<free port>, in a background thread; yields a dict with url, app, model."""
    import gradio  # noqa: F401  (skip cleanly below if missing)
    from dust3r.app import free_port, launch_demo
    from dust3r.utils.synthetic import OracleModel
    from mast3r.demo import build_demo

    scene, _ = synthetic_images
    tmp = tmp_path_factory.mktemp("demo_tmp")
    saved = {k: os.environ.get(k) for k in ("GRADIO_IS_E2E_TEST", "GRADIO_TEMP_DIR")}
    # fast heartbeats so that closed pages are noticed within a second (gradio's own end-to-end test switch)
    os.environ["GRADIO_IS_E2E_TEST"] = "1"
    os.environ["GRADIO_TEMP_DIR"] = str(tmp / "gradio")
    model = CountingModel(OracleModel(scene, lookup="image"))
    app = build_demo(model, "cpu", image_size=SCENE_SIZE[0], tmp_dir=str(tmp / "sessions"), silent=True,
                     max_images=8)
    with socket.socket() as s:  # an ephemeral port the OS says is free (then checked again by free_port)
        s.bind(("127.0.0.1", 0))
        port = free_port(s.getsockname()[1] + 1)
    url = launch_demo(app, server_port=port, block=False, quiet=True)
    try:
        yield {"url": url, "app": app, "model": model, "workspaces": app.session_workspaces, "tmp": tmp}
    finally:
        app.close()
        app.session_workspaces.close()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def screenshots():
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
