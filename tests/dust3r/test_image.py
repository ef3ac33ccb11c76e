"""Tests for dust3r.utils.image: fixture parity, input kinds, colour modes, geometry record, errors."""
from __future__ import annotations

import logging
import shutil
import warnings
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from PIL.ImageOps import exif_transpose

from dust3r.utils.image import (
    ImageLoadError,
    ImgNorm,
    _resize_pil_image,
    compute_resize_crop,
    image_files_in_folder,
    img_to_arr,
    intrinsics_from_original,
    intrinsics_to_original,
    imread_cv2,
    load_images,
    original_to_pixels,
    pixels_to_original,
    rgb,
)

DATA = Path(__file__).resolve().parents[1] / "data"
IMAGES = DATA / "images"
PREPROCESS = DATA / "preprocess"
NAMES = ["a_landscape.png", "b_portrait.jpg", "c_square.png", "d_small.png", "e_alpha.png", "f_exif.jpg"]
PATHS = [str(IMAGES / n) for n in NAMES]


@pytest.fixture(scope="module")
def views512():
    return load_images(PATHS, size=512, square_ok=False, verbose=False)


def _assert_same_pixels(va, vb):
    assert np.array_equal(va["img"].numpy(), vb["img"].numpy())
    assert np.array_equal(va["true_shape"], vb["true_shape"])
    for key in ("orig_shape", "resized_shape", "crop_offset"):
        assert np.array_equal(va[key], vb[key]), key


# ------------------------------------------------------------------------------ fixture parity
@pytest.mark.parametrize("fixture, size, square_ok", [
    ("load_images_512_squareok0", 512, False),
    ("load_images_512_squareok1", 512, True),
    ("load_images_224_squareok0", 224, False),
])
def test_fixture_parity(fixture, size, square_ok, views512):
    ref = np.load(PREPROCESS / f"{fixture}.npz")
    views = views512 if (size, square_ok) == (512, False) else \
        load_images(PATHS, size=size, square_ok=square_ok, verbose=False)
    assert len(views) == len(NAMES)
    checked = 0
    for i, view in enumerate(views):
        assert view["idx"] == i and view["instance"] == str(i)
        assert view["img"].dtype == torch.float32 and view["img"].shape[:2] == (1, 3)
        assert view["true_shape"].dtype == np.int32
        if f"img_{i}" not in ref:  # squareok1 stores only the square image (others identical)
            continue
        assert np.array_equal(view["img"].numpy(), ref[f"img_{i}"]), NAMES[i]
        assert np.array_equal(view["true_shape"], ref[f"true_shape_{i}"]), NAMES[i]
        assert view["true_shape"].dtype == ref[f"true_shape_{i}"].dtype
        assert view["idx"] == int(ref[f"idx_{i}"]) and view["instance"] == str(ref[f"instance_{i}"])
        checked += 1
    assert checked == (1 if square_ok else 6)


def test_square_ok_only_changes_square(views512):
    views = load_images(PATHS, size=512, square_ok=True, verbose=False)
    for i, (a, b) in enumerate(zip(views512, views)):
        if NAMES[i] == "c_square.png":
            assert a["true_shape"].tolist() == [[384, 512]] and b["true_shape"].tolist() == [[512, 512]]
        else:
            assert np.array_equal(a["img"].numpy(), b["img"].numpy())


def test_224_ignores_square_ok():
    a = load_images(PATHS[2], size=224, square_ok=False, verbose=False)[0]
    b = load_images(PATHS[2], size=224, square_ok=True, verbose=False)[0]
    assert np.array_equal(a["img"].numpy(), b["img"].numpy())


# ------------------------------------------------------------------------------ input kinds
def test_folder_equals_list(views512, tmp_path):
    folder_views = load_images(str(IMAGES), size=512, verbose=False)
    assert [Path(v["filepath"]).name for v in folder_views] == NAMES
    for a, b in zip(folder_views, views512):
        _assert_same_pixels(a, b)
    # pathlib input, upper-case extension, non-image files and sub-folders are skipped
    shutil.copy(IMAGES / NAMES[0], tmp_path / "B.PNG")
    shutil.copy(IMAGES / NAMES[1], tmp_path / "a.JPeG")
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "sub.png").mkdir()
    got = load_images(tmp_path, size=512, verbose=False)
    assert [Path(v["filepath"]).name for v in got] == ["B.PNG", "a.JPeG"]  # sorted by name
    _assert_same_pixels(got[0], views512[0])
    _assert_same_pixels(got[1], views512[1])
    assert [v["idx"] for v in got] == [0, 1]


def test_single_path_and_filepath_key(views512):
    view = load_images(Path(PATHS[3]), size=512, verbose=False)
    assert len(view) == 1 and view[0]["filepath"] == PATHS[3]
    _assert_same_pixels(view[0], views512[3])


def test_pil_and_numpy_inputs_equal_files(views512):
    pil_inputs = [PIL.Image.open(p) for p in PATHS]  # lazily decoded, EXIF still attached
    np_inputs = [np.array(exif_transpose(PIL.Image.open(p)).convert("RGB")) for p in PATHS]
    from_pil = load_images(pil_inputs, size=512, verbose=False)
    from_np = load_images(np_inputs, size=512, verbose=False)
    for ref, a, b in zip(views512, from_pil, from_np):
        _assert_same_pixels(ref, a)
        _assert_same_pixels(ref, b)
        assert a["filepath"] is None and b["filepath"] is None
    # mixed list keeps input order and indices
    mixed = load_images([np_inputs[0], PATHS[1], pil_inputs[2]], size=512, verbose=False)
    assert [v["idx"] for v in mixed] == [0, 1, 2] and [v["instance"] for v in mixed] == ["0", "1", "2"]
    _assert_same_pixels(mixed[1], views512[1])


def test_exif_orientation(views512):
    raw = PIL.Image.open(PATHS[5])
    assert raw.size == (400, 300)  # stored landscape, EXIF orientation 6
    view = views512[5]
    assert view["orig_shape"].tolist() == [[400, 300]]  # (H0, W0): portrait after transpose
    assert view["true_shape"].tolist() == [[512, 384]]


# ------------------------------------------------------------------------------ colour modes
def _rng_image(h=90, w=130, c=3, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, c), dtype=np.uint8)


def test_rgba_alpha_dropped_not_composited(tmp_path):
    rgba = _rng_image(c=4)
    rgba[::3, :, 3] = 0  # fully transparent rows with colourful RGB underneath
    path = tmp_path / "rgba.png"
    PIL.Image.fromarray(rgba, "RGBA").save(path)
    from_file = load_images([str(path)], size=64, verbose=False)[0]
    from_rgb = load_images([np.ascontiguousarray(rgba[..., :3])], size=64, verbose=False)[0]
    from_rgba_array = load_images([rgba], size=64, verbose=False)[0]
    _assert_same_pixels(from_file, from_rgb)
    _assert_same_pixels(from_file, from_rgba_array)


def test_grayscale_and_16bit(tmp_path):
    gray = _rng_image(c=1, seed=1)[..., 0]
    PIL.Image.fromarray(gray, "L").save(tmp_path / "g.png")
    rgb3 = np.repeat(gray[..., None], 3, axis=2)
    ref = load_images([rgb3], size=64, verbose=False)[0]
    for item in (str(tmp_path / "g.png"), gray, gray[..., None], PIL.Image.fromarray(gray)):
        _assert_same_pixels(load_images([item], size=64, verbose=False)[0], ref)
    # 16 bit: reduced with >> 8 (high byte), not saturated like PIL's convert
    g16 = gray.astype(np.uint16) * 256 + 100  # high byte == gray, low byte != 0
    PIL.Image.fromarray(g16).save(tmp_path / "g16.png")
    assert PIL.Image.open(tmp_path / "g16.png").mode.startswith("I")
    for item in (str(tmp_path / "g16.png"), g16, PIL.Image.fromarray(g16.astype(np.int32))):
        _assert_same_pixels(load_images([item], size=64, verbose=False)[0], ref)
    # float arrays in [0, 1]
    _assert_same_pixels(load_images([rgb3 / 255.0], size=64, verbose=False)[0], ref)
    assert np.array_equal(img_to_arr(str(tmp_path / "g16.png")), rgb3)


def test_normalisation_values():
    arr = np.arange(256, dtype=np.uint8).reshape(16, 16)
    arr = np.stack([arr, arr[::-1], arr.T], axis=2)
    # 16x16 at size 16 with square_ok: no resize, no crop
    view = load_images([np.ascontiguousarray(arr)], size=16, square_ok=True, verbose=False)[0]
    expected = (torch.from_numpy(arr).permute(2, 0, 1).float().div(255) - 0.5) / 0.5
    assert torch.equal(view["img"][0], expected)
    assert view["img"].min() == -1 and view["img"].max() == 1


# ------------------------------------------------------------------------------ geometry record
def test_geometry_keys(views512):
    for view in views512:
        for key, dtype in (("orig_shape", np.int32), ("resized_shape", np.int32),
                           ("crop_offset", np.int32), ("resize_scale", np.float32)):
            assert view[key].shape == (1, 2) and view[key].dtype == dtype, key
        (h0, w0), (h1, w1) = view["orig_shape"][0], view["resized_shape"][0]
        assert np.allclose(view["resize_scale"][0], [w1 / w0, h1 / h0])
        x0, y0 = view["crop_offset"][0]
        h, w = view["true_shape"][0]
        assert 0 <= x0 and x0 + w <= w1 and 0 <= y0 and y0 + h <= h1
    # c_square: 300x300 -> 512x512 -> rows 64..448 kept
    assert views512[2]["crop_offset"].tolist() == [[0, 64]]
    assert views512[2]["resized_shape"].tolist() == [[512, 512]]


def test_compute_resize_crop_matches_loader(views512):
    for name, view in zip(NAMES, views512):
        h0, w0 = view["orig_shape"][0]
        plan = compute_resize_crop(int(w0), int(h0), 512)
        assert plan.final_size == tuple(view["true_shape"][0][::-1])
        assert plan.box[:2] == tuple(view["crop_offset"][0])


def test_mapping_round_trips(views512):
    for view in views512:
        h, w = view["true_shape"][0]
        ys, xs = np.mgrid[0:h:7, 0:w:5]
        pix = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float64)
        back = original_to_pixels(pixels_to_original(pix, view), view)
        assert np.allclose(back, pix, atol=1e-9)
        h0, w0 = view["orig_shape"][0]
        ys, xs = np.mgrid[0:h0:11, 0:w0:13]
        orig = np.stack([xs.ravel(), ys.ravel()], axis=1)
        assert np.allclose(pixels_to_original(original_to_pixels(orig, view), view), orig, atol=1e-9)
        # tensors in, tensors out
        t = pixels_to_original(torch.from_numpy(pix), view)
        assert isinstance(t, torch.Tensor) and np.allclose(t.numpy(), pixels_to_original(pix, view))


def test_mapping_corners_and_formula():
    # 1000x700 -> 512x358 (LANCZOS) -> crop rows 3..355 (352 = 22*16), all 512 columns
    view = load_images([np.zeros((700, 1000, 3), np.uint8)], size=512, verbose=False)[0]
    assert view["resized_shape"].tolist() == [[358, 512]]
    assert view["crop_offset"].tolist() == [[0, 3]]
    assert view["true_shape"].tolist() == [[352, 512]]
    # outer edges of the processed image (-0.5) map to the outer edges of the crop in the original
    edge = pixels_to_original(np.array([[-0.5, -0.5]]), view)
    assert np.allclose(edge, [[-0.5, 3 * 700 / 358 - 0.5]])
    centre = pixels_to_original(np.array([[255.5, 175.5]]), view)  # centre of the crop
    assert np.allclose(centre, [[499.5, (3 + 176) * 700 / 358 - 0.5]])


@pytest.mark.parametrize("shape, point", [((700, 1000), (700, 200)), ((130, 200), (150, 40))])
def test_mapping_finds_original_pixel(shape, point):
    """A dark blob at a known original pixel lands where pixels_to_original says it does."""
    h0, w0 = shape
    x, y = point
    img = np.full((h0, w0, 3), 255, np.uint8)
    r = 4 if w0 > 512 else 1
    img[y - r:y + r + 1, x - r:x + r + 1] = 0
    view = load_images([img], size=512, verbose=False)[0]
    assert view["crop_offset"][0, 1] > 0  # the crop really shifts rows
    dark = 255.0 - (rgb(view["img"][0]) * 255.0).mean(axis=2)  # (H, W) darkness
    dark = np.clip(dark - 10.0, 0.0, None)  # ignore ringing
    ys, xs = np.mgrid[0:dark.shape[0], 0:dark.shape[1]]
    blob = np.array([[(xs * dark).sum() / dark.sum(), (ys * dark).sum() / dark.sum()]])
    found = pixels_to_original(blob, view)[0]
    assert np.abs(found - [x, y]).max() < 0.35, found
    # and the other way round
    assert np.abs(original_to_pixels(np.array([[x, y]]), view)[0] - blob[0]).max() < 0.35 * 512 / max(shape)


def test_intrinsics_mapping(views512):
    view = views512[1]  # portrait, cropped columns
    h, w = view["true_shape"][0]
    K = np.array([[400.0, 0.0, w / 2 - 0.3], [0.0, 410.0, h / 2 + 0.7], [0.0, 0.0, 1.0]])
    pts = np.random.default_rng(0).normal(size=(20, 3)) + [0, 0, 5]
    proj = (K @ pts.T).T
    pix = proj[:, :2] / proj[:, 2:]
    K0 = intrinsics_to_original(K, view)
    proj0 = (K0 @ pts.T).T
    assert np.allclose(proj0[:, :2] / proj0[:, 2:], pixels_to_original(pix, view))
    assert np.allclose(intrinsics_from_original(K0, view), K)
    assert np.allclose(K0[2], [0, 0, 1])
    # batched torch
    Kt = torch.from_numpy(np.stack([K, K]))
    assert np.allclose(intrinsics_to_original(Kt, view).numpy(), np.stack([K0, K0]))


def test_mapping_needs_geometry_keys():
    with pytest.raises(ValueError, match="orig_shape"):
        pixels_to_original(np.zeros((1, 2)), {"img": None, "true_shape": np.int32([[4, 4]])})


# ------------------------------------------------------------------------------ rgb helper
def test_rgb_helper(views512):
    img = views512[0]["img"]
    hwc = rgb(img[0])
    assert hwc.shape == (384, 512, 3) and hwc.min() >= 0 and hwc.max() <= 1
    assert np.allclose(rgb(img)[0], hwc)  # batched
    assert np.allclose(rgb(img[0].permute(1, 2, 0)), hwc)  # HWC
    assert rgb(img[0], true_shape=(10, 20)).shape == (10, 20, 3)
    assert rgb(img, true_shape=np.int32([[10, 20]])).shape == (1, 10, 20, 3)
    u8 = np.array(PIL.Image.open(PATHS[0]).resize((512, 384), PIL.Image.Resampling.LANCZOS))
    assert np.allclose(hwc, u8 / 255.0, atol=1e-6)
    assert np.allclose(rgb(u8), u8 / 255.0)
    assert isinstance(rgb([img[0], img[0]]), list)


# ------------------------------------------------------------------------------ errors
def test_missing_file():
    with pytest.raises(FileNotFoundError, match="does_not_exist.png"):
        load_images(["does_not_exist.png"], size=512, verbose=False)
    with pytest.raises(FileNotFoundError, match="no_such_folder"):
        load_images("no_such_folder", size=512, verbose=False)


def test_non_image_file(tmp_path):
    txt = tmp_path / "readme.txt"
    txt.write_text("hello")
    with pytest.raises(ImageLoadError, match="readme.txt"):
        load_images([str(txt)], size=512, verbose=False)
    fake = tmp_path / "broken.png"
    fake.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(OSError, match="broken.png"):
        load_images([fake], size=512, verbose=False)


def test_empty_inputs(tmp_path):
    with pytest.raises(ValueError, match="no images found"):
        load_images(str(tmp_path), size=512, verbose=False)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="no images found"):
        load_images(tmp_path, size=512, verbose=False)
    with pytest.raises(ValueError, match="empty"):
        load_images([], size=512, verbose=False)


def test_heic_without_pillow_heif(tmp_path):
    try:
        import pillow_heif  # noqa: F401
        pytest.skip("pillow-heif is installed")
    except ImportError:
        pass
    heic = tmp_path / "photo.HEIC"
    heic.write_bytes(b"\x00\x00\x00\x18ftypheic")
    with pytest.raises(ImageLoadError, match=r"photo\.HEIC.*pip install pillow-heif"):
        load_images([str(heic)], size=512, verbose=False)
    with pytest.raises(ValueError, match="pip install pillow-heif"):
        load_images(str(tmp_path), size=512, verbose=False)


@pytest.mark.parametrize("size", [0, -16, 1.5, "512", True])
def test_bad_size(size):
    with pytest.raises(ValueError, match="size"):
        load_images(PATHS[:1], size=size, verbose=False)


def test_bad_arrays_and_types():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        load_images([np.full((8, 8, 3), 1.5)], size=16, verbose=False)
    with pytest.raises(ValueError, match="shape"):
        load_images([np.zeros((8, 8, 2), np.uint8)], size=16, verbose=False)
    with pytest.raises(TypeError, match="item 1"):
        load_images([PATHS[0], 3], size=16, verbose=False)


def test_odd_size_logs_a_plain_warning(caplog):
    """A size whose 3/4 crop is not a multiple of the patch size: one logged sentence, no raw UserWarning."""
    square = np.zeros((100, 100, 3), np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warnings.warn would raise here
        with caplog.at_level(logging.WARNING, logger="dust3r.utils.image"):
            views = load_images([square], size=160, verbose=False)  # 160x160 -> 160x120
    assert views[0]["true_shape"].tolist() == [[120, 160]]
    records = [r for r in caplog.records if r.name == "dust3r.utils.image"]
    assert len(records) == 1 and records[0].levelno == logging.WARNING
    msg = records[0].getMessage()
    assert msg.startswith("Image size 160 gives input #0 (ndarray) -> 160x120 whose sides are not multiples of "
                          "the patch size 16"), msg
    assert "a multiple of 64" in msg
    caplog.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with caplog.at_level(logging.WARNING, logger="dust3r.utils.image"):
            load_images([square], size=192, verbose=False)  # 192x144: fine
    assert not caplog.records
    with pytest.raises(ValueError, match="empty crop"):
        load_images([square], size=8, verbose=False)


def test_image_size_100_names_the_square_image(caplog, tmp_path):
    """``--image-size 100``: landscape images crop to 96x64 silently, a square one is named in the warning."""
    PIL.Image.fromarray(np.zeros((300, 400, 3), np.uint8)).save(tmp_path / "wide.png")
    PIL.Image.fromarray(np.zeros((300, 300, 3), np.uint8)).save(tmp_path / "square.png")
    with caplog.at_level(logging.WARNING, logger="dust3r.utils.image"):
        views = load_images(str(tmp_path), size=100, verbose=False)
    assert [v["true_shape"].tolist() for v in views] == [[[72, 96]], [[64, 96]]]
    (record,) = caplog.records
    assert "square.png" in record.getMessage() and "96x72" in record.getMessage()
    assert "wide.png" not in record.getMessage()


# ------------------------------------------------------------------------------ HEIC in a folder
def test_folder_heic_skipped_with_a_named_warning(tmp_path, caplog, monkeypatch):
    import dust3r.utils.image as image_mod
    monkeypatch.setattr(image_mod, "heif_available", lambda: False)
    shutil.copy(PATHS[0], tmp_path / "a.png")
    (tmp_path / "b_photo.HEIC").write_bytes(b"\x00\x00\x00\x18ftypheic")
    (tmp_path / "c_photo.heif").write_bytes(b"\x00\x00\x00\x18ftypheif")
    with caplog.at_level(logging.WARNING, logger="dust3r.utils.image"):
        views = load_images(str(tmp_path), size=512, verbose=False)
    assert [v["filepath"] for v in views] == [str(tmp_path / "a.png")]
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert record.getMessage() == (f"Skipping 2 HEIC/HEIF image(s) in {tmp_path} because pillow-heif is not "
                                   "installed (pip install pillow-heif): b_photo.HEIC, c_photo.heif")
    files, skipped = image_files_in_folder(str(tmp_path))
    assert files == [str(tmp_path / "a.png")]
    assert skipped == [str(tmp_path / "b_photo.HEIC"), str(tmp_path / "c_photo.heif")]
    # with pillow-heif the same folder lists the HEIC files as images (nothing skipped)
    monkeypatch.setattr(image_mod, "heif_available", lambda: True)
    files, skipped = image_files_in_folder(str(tmp_path))
    assert [Path(f).name for f in files] == ["a.png", "b_photo.HEIC", "c_photo.heif"] and skipped == []


# ------------------------------------------------------------------------------ names of the original
class TestImgNorm:
    def test_equals_load_images_normalisation(self, views512):
        """ImgNorm of the resized + cropped PIL image is exactly the ``img`` load_images returns."""
        img = exif_transpose(PIL.Image.open(PATHS[0])).convert("RGB")
        plan = compute_resize_crop(*img.size, 512)
        cropped = img.resize(plan.resized_size, plan.resample).crop(plan.box)
        out = ImgNorm(cropped)
        assert out.dtype == torch.float32 and out.shape == (3, 384, 512)
        assert torch.equal(out[None], views512[0]["img"])

    def test_values_and_layout(self):
        u8 = np.array([[[0, 128, 255], [51, 102, 204]]], dtype=np.uint8)  # (1, 2, 3)
        out = ImgNorm(PIL.Image.fromarray(u8))
        assert out.shape == (3, 1, 2)
        # torchvision: ToTensor (u8 / 255, float32), then (x - 0.5) / 0.5
        expected = (torch.from_numpy(u8).permute(2, 0, 1).float() / 255 - 0.5) / 0.5
        assert torch.equal(out, expected)
        assert out[:, 0, 0].tolist() == [-1.0, pytest.approx(0.00392157, abs=1e-7), 1.0]
        assert torch.equal(ImgNorm(u8), out)  # uint8 array == PIL image
        as_float = ImgNorm(u8.astype(np.float64) / 255)  # float arrays: already in [0, 1], dtype kept
        assert as_float.dtype == torch.float64
        torch.testing.assert_close(as_float.float(), out)

    def test_refuses_what_torchvision_cannot_normalise(self):
        with pytest.raises(ValueError, match="RGB image, got mode 'RGBA'"):
            ImgNorm(PIL.Image.new("RGBA", (4, 4)))
        with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
            ImgNorm(np.zeros((4, 4), np.uint8))
        with pytest.raises(TypeError, match="Tensor"):
            ImgNorm(torch.zeros(4, 4, 3))


class TestImreadCv2:
    def test_returns_rgb(self, tmp_path):
        rgb_u8 = np.zeros((4, 6, 3), np.uint8)
        rgb_u8[..., 0] = 200  # pure red
        rgb_u8[1, 2] = (10, 20, 30)
        path = tmp_path / "red.png"
        PIL.Image.fromarray(rgb_u8).save(path)
        out = imread_cv2(str(path))
        assert out.dtype == np.uint8 and out.shape == (4, 6, 3)
        assert np.array_equal(out, rgb_u8)  # RGB order, not OpenCV's BGR
        assert np.array_equal(imread_cv2(path), rgb_u8)  # PathLike accepted

    def test_depth_png_unchanged(self, tmp_path):
        import cv2
        depth = (np.arange(12, dtype=np.uint16) * 5000).reshape(3, 4)
        path = tmp_path / "depth.png"
        PIL.Image.fromarray(depth).save(path)
        out = imread_cv2(str(path), cv2.IMREAD_UNCHANGED)
        assert out.dtype == np.uint16 and np.array_equal(out, depth)

    def test_errors_name_the_file(self, tmp_path):
        with pytest.raises(FileNotFoundError, match="missing.png"):
            imread_cv2(str(tmp_path / "missing.png"))
        bad = tmp_path / "bad.png"
        bad.write_bytes(b"not an image")
        with pytest.raises(OSError, match="bad.png"):
            imread_cv2(str(bad))


@pytest.mark.parametrize("size, long_edge, expect_size, expect_filter", [
    ((640, 480), 512, (512, 384), PIL.Image.Resampling.LANCZOS),
    ((480, 640), 512, (384, 512), PIL.Image.Resampling.LANCZOS),
    ((100, 75), 512, (512, 384), PIL.Image.Resampling.BICUBIC),
    ((333, 101), 224, (224, 68), PIL.Image.Resampling.LANCZOS),   # 101 * 224 / 333 = 67.9 -> 68
])
def test_resize_pil_image(size, long_edge, expect_size, expect_filter):
    img = PIL.Image.fromarray(np.random.default_rng(0).integers(0, 255, size[::-1] + (3,), dtype=np.uint8))
    out = _resize_pil_image(img, long_edge)
    assert out.size == expect_size and out.mode == "RGB"
    assert np.array_equal(np.asarray(out), np.asarray(img.resize(expect_size, expect_filter)))


def test_resize_pil_image_is_the_loader_resize(views512):
    """The loader's 512 view of the landscape fixture is the centre crop of _resize_pil_image's output."""
    img = exif_transpose(PIL.Image.open(PATHS[0])).convert("RGB")
    resized = _resize_pil_image(img, 512)
    assert views512[0]["resized_shape"].tolist() == [[resized.size[1], resized.size[0]]]
    x0, y0 = views512[0]["crop_offset"][0]
    H, W = views512[0]["true_shape"][0]
    assert torch.equal(ImgNorm(resized.crop((x0, y0, x0 + W, y0 + H)))[None], views512[0]["img"])
