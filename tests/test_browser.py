"""The lesion browser (plan_lite.viz.browser): pure helpers, the widget without a frontend, then real browsers.

* helpers: label colour table, crop / stride grid and NiiVue coordinates, lesion table rows from a lesion list, from
  ``lesion_metrics_case`` results (ids must be the metric's) and from label maps;
* widget: built without a frontend, choosing a row moves the crosshair, phase / window / overlay controls, the
  widget state stays small;
* JupyterLab: a server on localhost (random port, token) runs a notebook that shows the browser; headless Chromium
  (playwright driving the system ``chromium`` with SwiftShader WebGL, no browser download) checks that the NiiVue
  canvas is drawn and that choosing another lesion changes the view;
* the built book: ``book/_build/html/notebooks/01_data_preparation.html`` (``make book``) shows the viewer drawn
  without a kernel, with no request leaving the machine;
* itkwidgets (the optional ``itk`` extra, online only): ``view()`` returns; skipped without the extra.

Screenshots go to ``build/test-artifacts/`` (browser_lab_first.png, browser_lab_second.png, browser_book.png).
Without chromium or playwright the browser tests skip, except with ``CI`` set, where they fail.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pytest

from plan_lite.errors import PlanLiteError
from plan_lite.labels import LABEL_NAMES, LESION_LABELS
from plan_lite.metrics.lesion import lesion_metrics_case
from plan_lite.viz import LABEL_COLORS
from plan_lite.viz.browser import (
    browser_grid,
    label_lut,
    lesion_regions,
    lesion_rows,
    nifti_gz,
    world_to_voxel,
)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import check_book  # noqa: E402

ARTIFACTS = ROOT / "build" / "test-artifacts"
# the lesson page of `make book`; PLAN_LITE_BOOK_PAGE points the check at another build (e.g. a one-page book)
BOOK_PAGE = Path(os.environ.get("PLAN_LITE_BOOK_PAGE")
                 or ROOT / "book" / "_build" / "html" / "notebooks" / "01_data_preparation.html")
SPACING = (5.0, 2.5, 2.5)
# NiiVue needs WebGL2: SwiftShader (software) in headless Chromium
CHROMIUM_ARGS = ["--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist", "--no-sandbox",
                 "--disable-dev-shm-usage", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
MAX_PAGE_BYTES = 15_000_000


def phantom() -> tuple[np.ndarray, np.ndarray]:
    """(3, 24, 64, 64) HU image and a label map: liver, a hemangioma (z 6) and a metastasis (z 17)."""
    img = np.full((3, 24, 64, 64), -100.0, np.float32)
    label = np.zeros((24, 64, 64), np.uint8)
    zz, yy, xx = np.mgrid[:24, :64, :64]
    label[4:20, 12:52, 10:54] = 1
    label[((zz - 6) * 5) ** 2 + ((yy - 30) * 2.5) ** 2 + ((xx - 24) * 2.5) ** 2 <= 10 ** 2] = 11
    label[((zz - 17) * 5) ** 2 + ((yy - 36) * 2.5) ** 2 + ((xx - 40) * 2.5) ** 2 <= 8 ** 2] = 9
    for c, hu in enumerate((50.0, 80.0, 110.0)):
        img[c][label == 1] = hu
        img[c][label == 11] = hu + 60
        img[c][label == 9] = hu - 40
    return img, label


# ---------------------------------------------------------------------------------------------------- helpers
def test_label_lut_uses_the_project_colours():
    lut = label_lut([1, 9])
    assert lut["I"] == sorted(LABEL_NAMES) and lut["labels"][9] == "metastasis"
    r, g, b = (int(LABEL_COLORS[9][i:i + 2], 16) for i in (1, 3, 5))
    assert (lut["R"][9], lut["G"][9], lut["B"][9]) == (r, g, b)
    assert lut["A"][0] == 0 and lut["A"][7] == 0  # not listed: transparent
    assert lut["A"][9] == 255 and 0 < lut["A"][1] < 255  # lesions opaque, organs faint


def test_grid_crops_to_the_liver_and_strides_within_the_budget():
    img, label = phantom()
    grid = browser_grid(label.shape, SPACING, label, margin_mm=5.0)
    assert grid.start == (3, 10, 8) and grid.stop == (21, 54, 56) and grid.factors == (1, 1, 1)
    small = browser_grid(label.shape, SPACING, label, margin_mm=5.0, max_voxels=4000)
    assert np.prod(small.out_shape) <= 4000 and small.factors[1] > 1
    lab = small.label(label)
    assert lab.shape == small.out_shape and {9, 11} <= set(np.unique(lab).tolist())  # lesions survive
    ct = small.image(img[2])
    assert ct.dtype == np.int16 and ct.shape == small.out_shape
    # coordinates: a voxel centre maps to NiiVue's fraction (x, y, z), flipped axes count from the other end
    f = grid.frac((6, 30, 24))
    assert f == pytest.approx([(24 - 8 + 0.5) / 48, (30 - 10 + 0.5) / 44, (6 - 3 + 0.5) / 18])
    flipped = browser_grid(label.shape, SPACING, label, margin_mm=5.0, affine=np.diag([-2.5, -2.5, 5.0, 1.0]))
    assert flipped.frac((6, 30, 24))[:2] == pytest.approx([1 - f[0], 1 - f[1]])
    whole = browser_grid(label.shape, SPACING, None)
    assert whole.out_shape == label.shape and whole.affine()[0, 0] == 2.5


def test_nifti_bytes_round_trip(tmp_path):
    import nibabel as nib

    img, label = phantom()
    grid = browser_grid(label.shape, SPACING, label)
    path = tmp_path / "x.nii.gz"
    path.write_bytes(nifti_gz(grid.label(label), grid.affine()))
    back = np.asarray(nib.load(path).dataobj).transpose(2, 1, 0)
    assert np.array_equal(back, grid.label(label))


def test_rows_from_metrics_use_the_metric_ids_and_status():
    img, gt = phantom()
    pred = gt.copy()
    pred[pred == 9] = 1  # the metastasis is missed
    pred[10:13, 50:56, 44:50] = 13  # a false positive
    m = lesion_metrics_case(gt, pred, SPACING, details=True)
    rows = lesion_rows(SPACING, gt, pred, m)
    by_status = {r.status: r for r in rows}
    assert set(by_status) == {"detected", "missed", "false positive"}
    assert by_status["detected"].type == "hemangioma" and by_status["detected"].dice == pytest.approx(1.0)
    assert round(by_status["detected"].centroid[0]) == 6 and round(by_status["missed"].centroid[0]) == 17
    assert by_status["missed"].dice is None and by_status["false positive"].source == "pred"
    assert [r.id for r in rows if r.source == "gt"] == [les["id"] for les in m["gt_lesions"]]
    # the same table when the browser computes the metrics itself, and from gt_lesions + pairs
    assert [r.text() for r in lesion_rows(SPACING, gt, pred)] == [r.text() for r in rows]
    listed = lesion_rows(SPACING, gt, pred, m["gt_lesions"], pairs=m["pairs"])
    assert [(r.status, r.dice) for r in listed] == [(r.status, r.dice) for r in rows if r.source == "gt"]
    # ids of metrics computed on other label maps are refused, not silently misplaced
    other = gt.copy()
    other[other == 11] = 1
    with pytest.raises(PlanLiteError, match="not component"):
        lesion_rows(SPACING, other, pred, m)


def test_regions_agree_with_the_metric_on_many_lesions():
    rng = np.random.default_rng(0)
    gt = np.zeros((20, 40, 40), np.uint8)
    for _ in range(12):
        z, y, x = rng.integers(2, 18), rng.integers(3, 37), rng.integers(3, 37)
        gt[z - 1:z + 2, y - 2:y + 2, x - 2:x + 2] = rng.choice(LESION_LABELS)
    m = lesion_metrics_case(gt, np.zeros_like(gt), (1.0, 1.0, 1.0), min_radius_mm=0.5, details=True)
    regs = lesion_regions(gt, np.zeros_like(gt))
    assert {g["id"]: g["voxels"] for g in m["gt_lesions"]} == {i: r["voxels"] for i, r in regs.items()}


def test_rows_from_lesions_json_and_predict_output():
    from plan_lite.data.synthetic import generate_case

    case = generate_case(0, shape=(32, 160, 160), group="tumor")
    rows = lesion_rows(case.spacing, case.label, None, case.lesions, affine=case.affine)
    for row, les in zip(rows, case.lesions):
        comp = np.argwhere(case.label == les["label"])
        assert row.centroid == pytest.approx(tuple(comp.mean(0)))  # moved onto the rasterised lesion
        assert row.z_range == (comp[:, 0].min(), comp[:, 0].max())
        listed = np.array(world_to_voxel(les["center_mm"], case.affine))  # world mm -> voxels, near it
        assert np.abs((listed - comp.mean(0)) * case.spacing).max() < 8.0
        assert row.type == les["type"] and row.radius_mm == les["radius_mm"] and row.status == ""
    unsnapped = lesion_rows(case.spacing, None, None, case.lesions, affine=case.affine)
    assert unsnapped[0].centroid == pytest.approx(world_to_voxel(case.lesions[0]["center_mm"], case.affine))
    with pytest.raises(PlanLiteError, match="affine"):
        lesion_rows(case.spacing, case.label, None, case.lesions)
    pred_rows = lesion_rows(SPACING, lesions=[{"id": 3, "center_voxel_zyx": [4.0, 5.0, 6.0], "type": "hcc",
                                                "score": 0.9, "detected": False}])
    assert pred_rows[0].status == "missed" and pred_rows[0].score == 0.9 and pred_rows[0].centroid == (4, 5, 6)


# ---------------------------------------------------------------------------------------------------- widget
@pytest.fixture(scope="module")
def widget_module():
    return pytest.importorskip("plan_lite.viz.browser_widget", reason="needs the notebooks extra (ipyniivue)")


def test_browser_widget_without_a_frontend(widget_module):
    import ipywidgets

    from plan_lite.viz import lesion_browser

    img, gt = phantom()
    pred = gt.copy()
    pred[pred == 9] = 1
    b = lesion_browser(img, SPACING, gt=gt, pred=pred, window="abdomen", title="phantom")
    assert isinstance(b, ipywidgets.Widget) and len(b.rows) == 2
    assert "detected" in b.table.options[0][0] and "missed" in b.table.options[1][0]
    first = b.crosshair
    assert first == pytest.approx(b.grid.frac(b.rows[0].centroid))
    b.select(1)
    assert b.crosshair != first and "#2" in b.info.value and b.table.value == 1
    ct = b.viewer.volumes[0]
    assert (ct.cal_min, ct.cal_max) == (-160.0, 240.0)
    b.window.value = "liver"
    assert (ct.cal_min, ct.cal_max) == (-15.0, 135.0)
    b.phase.value = 0
    assert b.viewer.volumes[0] is not ct and b.viewer.volumes[0].name == "ct_nc.nii.gz"
    b.show_pred.value = False
    assert all(v.opacity == 0 for v in b.overlays["prediction"]) and b.overlays["ground truth"][0].opacity > 0
    with pytest.raises(PlanLiteError, match="phase"):
        lesion_browser(img, SPACING, gt=gt, phase="art")
    with pytest.raises(IndexError):
        b.select(5)


def test_widget_state_stays_small(widget_module):
    """A realistic case (3 phases of 48 x 256 x 256) costs the bundle plus well under 2 MB of volumes."""
    import ipywidgets
    from ipywidgets.embed import dependency_state

    from plan_lite.viz import lesion_browser

    img, gt = phantom()
    big = np.repeat(np.repeat(np.repeat(img, 2, 1), 4, 2), 4, 3)
    big += np.random.default_rng(0).normal(0, 20, big.shape).astype(np.float32)  # noise compresses badly
    gtb = np.repeat(np.repeat(np.repeat(gt, 2, 0), 4, 1), 4, 2)
    b = lesion_browser(big, (2.5, 0.625, 0.625), gt=gtb, pred=gtb)
    state = dependency_state(b, drop_defaults=True)
    size = len(json.dumps(state, default=lambda v: "x" * (len(v) * 4 // 3)))  # buffers as base64
    assert size < 7_000_000, size
    assert np.prod(b.grid.out_shape) <= 1_500_000
    ipywidgets.Widget.close_all()


def test_anywidget_js_matches_the_python_package():
    """The anywidget module vendored for the book (Makefile ANYWIDGET_JS_VERSION) is the one the installed
    anywidget declares (its _model_module_version), else the static book cannot load ipyniivue's widget."""
    anywidget = pytest.importorskip("anywidget")
    make = (ROOT / "Makefile").read_text()
    pinned = re.search(r"^ANYWIDGET_JS_VERSION \?= (\S+)", make, re.M).group(1)
    major_minor = ".".join(anywidget.__version__.split(".")[:2])
    assert pinned.startswith(major_minor + "."), (pinned, anywidget.__version__)
    assert "widgets/embed-amd.js" in (ROOT / "book" / "_config.yml").read_text()


# ---------------------------------------------------------------------------------------------------- browsers
def _chromium_or_skip() -> str:
    exe = check_book.find_chromium()
    msg = None
    if exe is None:
        msg = "chromium is not installed (`make browser-deps` installs it)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            msg = "playwright is not installed (the dev extra has it)"
    if msg:
        if os.environ.get("CI"):
            pytest.fail(msg + "; CI must run the browser tests")
        pytest.skip(msg)
    return exe


def _browser(pw, exe: str):
    return pw.chromium.launch(executable_path=exe, headless=True, args=CHROMIUM_ARGS, timeout=60_000)


def _canvas_png(page, selector: str = "canvas") -> bytes:
    el = page.locator(selector).first
    el.scroll_into_view_if_needed(timeout=30_000)
    return el.screenshot(timeout=30_000)


def _spread(png: bytes) -> float:
    """Standard deviation of the grey levels of a screenshot (0 for a blank canvas)."""
    from PIL import Image

    return float(np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.float32).std())


def _wait_drawn(page, selector: str, timeout_s: float, min_spread: float = 10.0) -> bytes:
    """The canvas screenshot once it is drawn (pixels vary) and stable (two equal shots 1 s apart)."""
    t0, last = time.monotonic(), b""
    while time.monotonic() - t0 < timeout_s:
        if page.locator(selector).count():
            png = _canvas_png(page, selector)
            if _spread(png) > min_spread and png == last:
                return png
            last = png
        time.sleep(1.0)
    raise AssertionError(f"{selector} not drawn within {timeout_s:.0f} s (last spread {_spread(last) if last else 0:.1f})")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


LAB_NOTEBOOK = """\
import numpy as np
from plan_lite.data.synthetic import generate_case
from plan_lite.viz import lesion_browser

case = generate_case(0, shape=(32, 160, 160), group="tumor")
image = np.stack([case.images[p] for p in ("nc", "la", "pv")])
pred = case.label.copy()
pred[pred == 13] = 1  # the cyst is missed
browser = lesion_browser(image, case.spacing, gt=case.label, pred=pred, affine=case.affine, height=480)
browser
"""


@pytest.fixture()
def lab_server(tmp_path):
    """JupyterLab on 127.0.0.1 (free port, random token, no browser, root allowed); stopped (process group) after."""
    pytest.importorskip("jupyterlab")
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(LAB_NOTEBOOK)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "browser.ipynb")
    port, token = _free_port(), uuid.uuid4().hex
    home = tmp_path / "home"
    for d in ("runtime", "settings", "workspaces", "config"):
        (home / d).mkdir(parents=True)
    news = home / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    news.parent.mkdir(parents=True)
    news.write_text('{"fetchNews": "false", "checkForUpdates": false}')  # no "notified about news?" toast
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(home / "runtime"), "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"), "JUPYTER_CONFIG_DIR": str(home / "config"),
           "IPYTHONDIR": str(home / "ipython"), "PLAN_LITE_STATIC_VIEWS": "0", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", f"--port={port}", "--ip=127.0.0.1",
           "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={tmp_path}",
           "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=", "--LabApp.check_for_updates_class="
           "jupyterlab.NeverCheckForUpdate"]
    log = open(tmp_path / "lab.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        t0 = time.monotonic()
        while True:
            if proc.poll() is not None:
                pytest.fail(f"jupyter lab exited ({proc.returncode}): {(tmp_path / 'lab.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() - t0 > 120:
                pytest.fail(f"jupyter lab did not answer in 120 s: {(tmp_path / 'lab.log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield {"base": base, "token": token, "dir": tmp_path}
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)  # the server and its kernels (one session of ours)
            proc.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=10)
        log.close()


@pytest.mark.slow
def test_browser_in_jupyterlab(lab_server):
    """Run the notebook in a real JupyterLab: the NiiVue canvas is drawn, choosing another lesion redraws it."""
    exe = _chromium_or_skip()
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    url = f"{lab_server['base']}/lab/tree/browser.ipynb?token={lab_server['token']}"
    canvas = ".jp-OutputArea-output canvas"
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = _browser(pw, exe)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.set_default_timeout(60_000)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(url, wait_until="domcontentloaded", timeout=120_000)
            page.wait_for_function("window.jupyterapp && document.querySelector('.jp-Notebook')", timeout=120_000)
            page.wait_for_function(  # the kernel is up: the status says idle
                "() => { const p = window.jupyterapp.shell.currentWidget;"
                " return p && p.sessionContext && p.sessionContext.session && p.sessionContext.session.kernel"
                " && p.sessionContext.session.kernel.status === 'idle'; }", timeout=180_000)
            page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
            first = _wait_drawn(page, canvas, 180)
            page.screenshot(path=str(ARTIFACTS / "browser_lab_first.png"))
            table = page.locator(".plan-lite-lesion-table select").first
            assert table.locator("option").count() == 2
            info = page.locator(".plan-lite-lesion-table .widget-html-content").last
            assert "#1" in info.inner_text(timeout=30_000)
            table.select_option(index=1)  # the cyst (missed), 7 slices above the hemangioma
            page.wait_for_function("() => [...document.querySelectorAll('.plan-lite-lesion-table')].some("
                                   "e => e.innerText.includes('lesion #2'))", timeout=60_000)
            t0, second = time.monotonic(), first
            while time.monotonic() - t0 < 60 and second == first:
                time.sleep(1.0)
                second = _canvas_png(page, canvas)
            assert second != first, "choosing another lesion did not change the view"
            assert _spread(second) > 10.0
            page.screenshot(path=str(ARTIFACTS / "browser_lab_second.png"))
        finally:
            browser.close()
    (ARTIFACTS / "browser_lab_first_canvas.png").write_bytes(first)
    (ARTIFACTS / "browser_lab_second_canvas.png").write_bytes(second)
    assert not [e for e in errors if "niivue" in e.lower() or "anywidget" in e.lower()], errors


@pytest.mark.slow
def test_browser_in_the_built_book():
    """The lesson-1 page of the built book draws the viewer from the stored widget state, offline."""
    if not BOOK_PAGE.exists():
        msg = f"{BOOK_PAGE} is missing (`make book` builds it; `make test` runs it first)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    exe = _chromium_or_skip()
    from playwright.sync_api import sync_playwright

    assert BOOK_PAGE.stat().st_size < MAX_PAGE_BYTES, BOOK_PAGE.stat().st_size
    html = BOOK_PAGE.read_text()
    assert "application/vnd.jupyter.widget-state+json" in html and "_static/widgets/embed-amd.js" in html
    assert not re.search(r"<script[^>]+src=\"https?://", html), "the page loads scripts from the network"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    remote: list[str] = []
    with sync_playwright() as pw:
        browser = _browser(pw, exe)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.on("request", lambda r: remote.append(r.url) if r.url.startswith(("http:", "https:")) else None)
            page.route(re.compile(r"^https?://"), lambda route: route.abort())
            page.goto(BOOK_PAGE.resolve().as_uri(), wait_until="load", timeout=120_000)
            png = _wait_drawn(page, ".cell_output canvas", 180)
            page.locator(".cell_output canvas").first.scroll_into_view_if_needed()
            page.screenshot(path=str(ARTIFACTS / "browser_book.png"))
            assert page.locator(".plan-lite-lesion-table select option").count() >= 1
        finally:
            browser.close()
    (ARTIFACTS / "browser_book_canvas.png").write_bytes(png)
    assert remote == [], f"the page tried the network: {remote[:5]}"


# ---------------------------------------------------------------------------------------------------- itkwidgets
def test_itkwidgets_view_returns():
    """The ``itk`` extra (online-only backend, never run in CI notebooks): in a kernel (itkwidgets needs one; plain
    Python takes the Hypha path) ``view()`` builds a Viewer and returns without a frontend. Skipped without the
    extra, which CI does not install."""
    pytest.importorskip("itkwidgets", reason="optional extra: pip install 'plan-lite[itk]'")
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(
        "import numpy as np, itkwidgets\n"
        "v = itkwidgets.view(np.zeros((8, 16, 16), np.float32), label_image=np.zeros((8, 16, 16), np.uint8))\n"
        "print(type(v).__module__, type(v).__name__)")]
    NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    text = "".join(o.get("text", "") for o in nb.cells[0].outputs if o.get("output_type") == "stream")
    assert "itkwidgets.viewer Viewer" in text, nb.cells[0].outputs
