"""dust3r.inputs: the checks front ends run before heavy work; every error is one line naming the input."""
import json
import logging
import os

import numpy as np
import PIL.Image
import pytest

from dust3r.inputs import (InputError, check_cam2world, check_checkpoint_kind, check_image_files, check_image_size,
                           check_intrinsics_matrix, check_output_dir, check_scene_graph, check_writable_dir,
                           match_names, read_image_size, read_known_intrinsics, read_known_poses)
from dust3r.inputs.images import MAX_ASPECT_RATIO, MIN_SIDE
from dust3r.inputs.options import MAX_IMAGE_SIZE, RESULT_NAMES


def _png(path, size=(64, 48), mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    PIL.Image.new(mode, size, color=128 if mode in ("L", "I;16") else (10, 20, 30)[: len(mode)]).save(path)
    return str(path)


def _one_line(exc_info):
    message = str(exc_info.value)
    assert "\n" not in message
    return message


class TestInputError:
    def test_is_a_value_error(self):
        assert issubclass(InputError, ValueError)

    def test_import_is_cheap(self):
        import subprocess
        import sys
        code = "import sys, dust3r.inputs; print('torch' in sys.modules, 'gradio' in sys.modules, 'PIL' in sys.modules)"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        assert out.split() == ["False", "False", "False"]


class TestCheckImageFiles:
    def test_folder_sorted_and_files_in_order(self, tmp_path):
        b = _png(tmp_path / "in" / "b.png")
        a = _png(tmp_path / "in" / "a.JPG".lower())
        (tmp_path / "in" / "notes.txt").write_text("not an image")
        (tmp_path / "in" / "sub.png").mkdir()  # a folder with an image extension is not an image
        assert check_image_files(str(tmp_path / "in")) == [a, b]
        assert check_image_files([b, a]) == [b, a]
        assert check_image_files([tmp_path / "in", b]) == [a, b, b]

    def test_real_fixture_images_pass(self, data_dir):
        files = check_image_files(str(data_dir / "images"))
        assert [os.path.basename(f) for f in files] == sorted(os.listdir(data_dir / "images"))

    @pytest.mark.parametrize("mode", ["RGBA", "L", "I;16", "P", "LA"])
    def test_colour_modes_accepted(self, tmp_path, mode):
        path = tmp_path / f"img_{mode.replace(';', '')}.png"
        if mode == "I;16":
            PIL.Image.fromarray(np.full((40, 50), 40000, dtype=np.uint16)).save(path)
        else:
            PIL.Image.new(mode, (50, 40)).save(path)
        assert check_image_files([str(path)]) == [str(path)]

    def test_missing(self, tmp_path):
        with pytest.raises(InputError, match="no such image file or folder") as e:
            check_image_files([str(tmp_path / "nope.png")])
        assert "nope.png" in _one_line(e)

    def test_empty_list_and_empty_folder(self, tmp_path):
        with pytest.raises(InputError, match="no input images"):
            check_image_files([])
        (tmp_path / "empty").mkdir()
        with pytest.raises(InputError, match="no images found") as e:
            check_image_files(str(tmp_path / "empty"))
        assert "empty" in _one_line(e)

    def test_zero_byte(self, tmp_path):
        (tmp_path / "zero.jpg").write_bytes(b"")
        with pytest.raises(InputError, match=r"empty \(0 bytes\)") as e:
            check_image_files(str(tmp_path))
        assert "zero.jpg" in _one_line(e)

    def test_not_an_image(self, tmp_path):
        (tmp_path / "fake.png").write_bytes(b"<html>hello</html>")
        with pytest.raises(InputError, match="not a recognised image") as e:
            check_image_files([str(tmp_path / "fake.png")])
        assert "fake.png" in _one_line(e)

    @pytest.mark.parametrize("fmt", ["PNG", "JPEG", "BMP", "TIFF", "WEBP"])
    def test_truncated(self, tmp_path, fmt):
        rng = np.random.default_rng(0)
        path = tmp_path / f"cut.{fmt.lower()}"
        PIL.Image.fromarray(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)).save(path, fmt)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        with pytest.raises(InputError, match="cannot read") as e:
            check_image_files([str(path)])
        assert path.name in _one_line(e)

    def test_too_small_and_too_elongated(self, tmp_path):
        with pytest.raises(InputError, match=r"1x1 pixels: too small") as e:
            check_image_files([_png(tmp_path / "dot.png", (1, 1))])
        assert "dot.png" in _one_line(e)
        assert check_image_files([_png(tmp_path / "edge.png", (MIN_SIDE, MIN_SIDE))])
        long_side = int(MIN_SIDE * MAX_ASPECT_RATIO)
        assert check_image_files([_png(tmp_path / "ok_strip.png", (long_side, MIN_SIDE))])
        with pytest.raises(InputError, match="aspect ratio") as e:
            check_image_files([_png(tmp_path / "strip.png", (long_side + MIN_SIDE, MIN_SIDE))])
        assert "strip.png" in _one_line(e)

    def test_huge_header_refused(self, tmp_path):
        from tests.reliability.support import forged_png
        path = forged_png(tmp_path / "huge.png", 100_000, 80_000)  # 16x16 pixels of data, an 8-gigapixel header
        with pytest.raises(InputError, match="too large") as e:
            check_image_files([str(path)])
        assert "huge.png" in _one_line(e)

    def test_pixel_limit_checked_before_decoding(self, tmp_path, monkeypatch):
        import dust3r.inputs.images as images
        monkeypatch.setattr(images, "MAX_PIXELS", 1000)
        with pytest.raises(InputError, match="too large") as e:
            check_image_files([_png(tmp_path / "big.png", (100, 100))])
        assert "big.png" in _one_line(e)

    def test_symlink_loop_and_broken_link(self, tmp_path):
        loop = tmp_path / "loop"
        os.symlink(loop, loop)
        with pytest.raises(InputError, match="symbolic link loop") as e:
            check_image_files([str(loop)])
        assert "loop" in _one_line(e)
        folder = tmp_path / "f"
        _png(folder / "a.png")
        os.symlink(folder, folder / "again")  # a folder link back to itself: never followed
        assert check_image_files(str(folder)) == [str(folder / "a.png")]
        os.symlink(tmp_path / "gone.png", folder / "b.png")
        with pytest.raises(InputError, match="broken symbolic link") as e:
            check_image_files(str(folder))
        assert "b.png" in _one_line(e)

    def test_pipe_refused_without_blocking(self, tmp_path):
        _png(tmp_path / "in" / "a.png")
        os.mkfifo(tmp_path / "in" / "b.png")
        with pytest.raises(InputError, match="not a regular file") as e:
            check_image_files(str(tmp_path / "in"))
        assert "b.png" in _one_line(e)
        with pytest.raises(InputError, match="not a regular file"):
            check_image_files([str(tmp_path / "in" / "b.png")])

    def test_unicode_paths(self, tmp_path):
        path = _png(tmp_path / "фото 照片" / "é.png")
        assert check_image_files(str(tmp_path / "фото 照片")) == [path]

    def test_heic_without_pillow_heif(self, tmp_path, monkeypatch, caplog):
        import dust3r.utils.image as image
        monkeypatch.setattr(image, "heif_available", lambda: False)
        folder = tmp_path / "mixed"
        keep = _png(folder / "a.png")
        (folder / "IMG_0001.HEIC").write_bytes(b"\x00\x00\x00\x18ftypheic")
        with caplog.at_level(logging.WARNING, logger="dust3r.inputs"):
            assert check_image_files(str(folder)) == [keep]
        assert "IMG_0001.HEIC" in caplog.text and "pillow-heif" in caplog.text
        with pytest.raises(InputError, match="pillow-heif") as e:
            check_image_files([str(folder / "IMG_0001.HEIC")])
        assert "IMG_0001.HEIC" in _one_line(e)
        os.remove(keep)
        with pytest.raises(InputError, match="only HEIC/HEIF") as e:
            check_image_files(str(folder))
        assert "IMG_0001.HEIC" in _one_line(e)

    def test_read_image_size_applies_exif_orientation(self, data_dir):
        assert read_image_size(data_dir / "images" / "f_exif.jpg") == (300, 400)
        assert read_image_size(data_dir / "images" / "a_landscape.png") == (640, 480)


class TestCheckOutputDir:
    def test_new_folder_is_not_created(self, tmp_path):
        target = tmp_path / "a" / "b"
        assert check_output_dir(str(target)) == str(target)
        assert not (tmp_path / "a").exists() and os.listdir(tmp_path) == []

    def test_relative_path_made_absolute(self, tmp_path, monkeypatch):
        monkeypatch.chdir(tmp_path)
        assert check_output_dir("out") == str(tmp_path / "out")

    def test_unwritable(self):
        with pytest.raises(InputError, match="not writable") as e:
            check_output_dir("/proc/x")
        assert "/proc/x" in _one_line(e)

    def test_file_and_below_a_file(self, tmp_path):
        (tmp_path / "f").write_text("x")
        with pytest.raises(InputError, match="not a folder"):
            check_output_dir(str(tmp_path / "f"))
        with pytest.raises(InputError, match="is a file") as e:
            check_output_dir(str(tmp_path / "f" / "sub"))
        assert "sub" in _one_line(e)

    def test_existing_result_needs_overwrite(self, tmp_path):
        (tmp_path / RESULT_NAMES[0]).write_bytes(b"old")
        with pytest.raises(InputError, match="not empty.*--overwrite") as e:
            check_output_dir(str(tmp_path))
        assert str(tmp_path) in _one_line(e)
        assert check_output_dir(str(tmp_path), overwrite=True) == str(tmp_path)
        assert sorted(os.listdir(tmp_path)) == [RESULT_NAMES[0]]  # the probe leaves nothing behind

    def test_overwrite_never_takes_a_foreign_folder(self, tmp_path):
        (tmp_path / "thesis.tex").write_text("precious")
        with pytest.raises(InputError, match="not a reconstruction result"):
            check_output_dir(str(tmp_path), overwrite=True)

    def test_empty_existing_folder_ok(self, tmp_path):
        assert check_output_dir(str(tmp_path)) == str(tmp_path)

    def test_bad_values(self):
        with pytest.raises(InputError):
            check_output_dir("")
        with pytest.raises(InputError):
            check_output_dir(None)


class TestCheckWritableDir:
    def test_any_content_accepted(self, tmp_path):
        (tmp_path / "thesis.tex").write_text("precious")
        assert check_writable_dir(tmp_path, "--tmp_dir") == str(tmp_path)
        assert sorted(os.listdir(tmp_path)) == ["thesis.tex"]

    def test_creatable_and_refused(self, tmp_path):
        assert check_writable_dir(tmp_path / "x" / "y") == str(tmp_path / "x" / "y")
        assert not (tmp_path / "x").exists()
        with pytest.raises(InputError, match="--tmp_dir '/proc/x'.*not writable"):
            check_writable_dir("/proc/x", "--tmp_dir")
        (tmp_path / "f").write_text("x")
        with pytest.raises(InputError, match="not a folder"):
            check_writable_dir(tmp_path / "f")


class TestCheckSceneGraph:
    @pytest.mark.parametrize("graph", ["complete", "swin", "swin-2", "swin-5-noncyclic", "swin-1-cyclic",
                                       "logwin", "logwin-3-noncyclic", "oneref", "oneref-3"])
    def test_accepted_and_consistent_with_make_pairs(self, graph):
        from dust3r.image_pairs import make_pairs
        assert check_scene_graph(graph, 4) == graph
        assert len(make_pairs([{"idx": i} for i in range(4)], scene_graph=graph)) > 0

    @pytest.mark.parametrize("graph", ["swin-abc", "star", "swin-2-noncyc", "oneref-x", "logwin--2", "", "SWIN-2",
                                       "swin-0", "oneref-4", "retrieval-20-1", "retrieval-x"])
    def test_refused_where_make_pairs_refuses(self, graph):
        from dust3r.image_pairs import make_pairs
        with pytest.raises(InputError) as e:
            check_scene_graph(graph, 4)
        assert repr(graph) in _one_line(e)
        with pytest.raises((ValueError, NotImplementedError)):
            make_pairs([{"idx": i} for i in range(4)], scene_graph=graph)

    def test_messages(self):
        with pytest.raises(InputError, match="unknown scene graph 'swin-abc'; accepted forms: 'complete', 'swin'"):
            check_scene_graph("swin-abc", 3)
        with pytest.raises(InputError, match="reference image 7 is out of range for 3 image"):
            check_scene_graph("oneref-7", 3)
        with pytest.raises(InputError, match="retrieval"):
            check_scene_graph("retrieval-20-1", 30)
        with pytest.raises(InputError, match="window size"):
            check_scene_graph("swin-99999999", 3)
        with pytest.raises(InputError, match="must be a string"):
            check_scene_graph(3, 3)

    def test_blanks_stripped(self):
        assert check_scene_graph(" swin-2 ", 3) == "swin-2"


class TestCheckImageSize:
    def test_multiples_kept(self):
        assert check_image_size(512, 16) == 512 and check_image_size(224, 16) == 224 and check_image_size(64) == 64
        assert check_image_size(512.0, 16) == 512

    def test_rounded_with_a_logged_note(self, caplog, recwarn):
        with caplog.at_level(logging.WARNING, logger="dust3r.inputs"):
            assert check_image_size(100, 16) == 96
            assert check_image_size(505, 16) == 512
            assert check_image_size(50, 14) == 56
        assert "100 is not a multiple of the model's patch size 16: using 96" in caplog.text
        assert len(recwarn) == 0  # a plain log line, no warnings.warn

    @pytest.mark.parametrize("size,match", [(0, "positive"), (-512, "positive"), (16, "too small"),
                                            (MAX_IMAGE_SIZE + 16, "too large"), ("512", "integer"),
                                            (True, "integer"), (512.5, "integer"), (None, "integer")])
    def test_refused(self, size, match):
        with pytest.raises(InputError, match=match):
            check_image_size(size, 16)

    def test_name_in_message(self):
        with pytest.raises(InputError, match="--image-size"):
            check_image_size(-1, 16, what="--image-size")


class TestCheckIntrinsicsMatrix:
    K = [[500.0, 0.0, 320.0], [0.0, 505.0, 240.0], [0.0, 0.0, 1.0]]

    def test_valid(self):
        out = check_intrinsics_matrix(self.K, (640, 480), "K")
        assert out.dtype == np.float64 and out.shape == (3, 3) and out[1, 1] == 505.0
        assert check_intrinsics_matrix(np.array(self.K), None)[0, 2] == 320.0

    def test_generous_principal_point_margin(self):
        K = np.array(self.K)
        K[0, 2], K[1, 2] = -300.0, 700.0  # outside the image, inside the half-size margin
        assert check_intrinsics_matrix(K, (640, 480))[0, 2] == -300.0

    @pytest.mark.parametrize("edit,match", [
        (lambda K: K.__setitem__((2, 2), 0.0), r"last row .* \[0, 0, 1\]"),
        (lambda K: K.__setitem__((0, 0), -5.0), "positive"),
        (lambda K: K.__setitem__((1, 1), 0.0), "positive"),
        (lambda K: K.__setitem__((0, 2), np.nan), "non-finite"),
        (lambda K: K.__setitem__((0, 2), -99999.0), "principal point"),
        (lambda K: K.__setitem__((1, 2), 1e12), "principal point"),
        (lambda K: K.__setitem__((0, 1), 3.0), "skew"),
        (lambda K: K.__setitem__((1, 0), 3.0), r"K\[1\]\[0\]"),
        (lambda K: K.__setitem__((1, 1), 50000.0), "differ"),
        (lambda K: (K.__setitem__((0, 0), 1e9), K.__setitem__((1, 1), 1e9)), "absurd"),
    ])
    def test_refused(self, edit, match):
        K = np.array(self.K)
        edit(K)
        with pytest.raises(InputError, match=match) as e:
            check_intrinsics_matrix(K, (640, 480), "cam.json['a.png']")
        assert _one_line(e).startswith("cam.json['a.png']: ")

    def test_tiny_skew_tolerated_and_shape_checked(self):
        K = np.array(self.K)
        K[0, 1] = 1e-6
        assert check_intrinsics_matrix(K, (640, 480))[0, 1] == 1e-6
        with pytest.raises(InputError, match="3x3"):
            check_intrinsics_matrix(np.eye(4), (640, 480))
        with pytest.raises(InputError, match="numbers"):
            check_intrinsics_matrix([["a", 0, 0], [0, 1, 0], [0, 0, 1]], None)


class TestCheckCam2world:
    @staticmethod
    def pose(angle=0.3):
        c, s = np.cos(angle), np.sin(angle)
        T = np.eye(4)
        T[:3, :3] = [[c, -s, 0], [s, c, 0], [0, 0, 1]]
        T[:3, 3] = [1.0, -2.0, 0.5]
        return T

    def test_valid_and_3x4(self):
        T = self.pose()
        np.testing.assert_array_equal(check_cam2world(T, "T"), T)
        np.testing.assert_array_equal(check_cam2world(T[:3], "T"), T)
        rounded = np.round(T, 6)  # poses written with 6 decimals pass
        assert check_cam2world(rounded).shape == (4, 4)

    @pytest.mark.parametrize("edit,match", [
        (lambda T: T.__setitem__((3, 3), 0.0), r"last row"),
        (lambda T: T.__setitem__((0, 3), np.inf), "non-finite"),
        (lambda T: T.__setitem__((slice(0, 3), slice(0, 3)), 2 * T[:3, :3]), "not orthonormal"),
        (lambda T: T.__setitem__((slice(0, 3), 2), -T[:3, 2]), "reflection"),
    ])
    def test_refused(self, edit, match):
        T = self.pose()
        edit(T)
        with pytest.raises(InputError, match=match) as e:
            check_cam2world(T, "poses.json['b.png']")
        assert _one_line(e).startswith("poses.json['b.png']: ")

    def test_shape(self):
        with pytest.raises(InputError, match="4x4 or 3x4"):
            check_cam2world(np.eye(3))


class TestMatchNames:
    paths = ["/data/dupA/same.png", "/data/dupB/same.png", "/data/other.jpg"]

    def test_full_path_then_trailing_parts_then_unique_base_name(self):
        assert match_names(["/data/dupB/same.png", "dupA/same.png", "other.jpg"], self.paths) == {
            "/data/dupB/same.png": 1, "dupA/same.png": 0, "other.jpg": 2}

    def test_relative_path_as_given(self, tmp_path, monkeypatch):
        monkeypatch.chdir(tmp_path)
        paths = ["imgs/a.png", "more/a.png"]
        assert match_names([str(tmp_path / "more" / "a.png")], paths) == {str(tmp_path / "more" / "a.png"): 1}

    def test_ambiguous_base_name_lists_candidates(self):
        with pytest.raises(InputError, match="ambiguous") as e:
            match_names(["same.png"], self.paths, where="K.json")
        message = _one_line(e)
        assert message.startswith("K.json: 'same.png'")
        assert "/data/dupA/same.png" in message and "/data/dupB/same.png" in message

    def test_unknown_and_twice(self):
        with pytest.raises(InputError, match="'nope.png' is not one of the input images"):
            match_names(["nope.png"], self.paths)
        with pytest.raises(InputError, match="both name the image"):
            match_names(["other.jpg", "/data/other.jpg"], self.paths)
        with pytest.raises(InputError, match="non-empty string"):
            match_names([3], self.paths)


def _assert_file_refused(reader, path, content, match, images):
    """``reader(path, images)`` on a file holding ``content`` raises one line matching ``match`` naming the file."""
    path.write_text(content)
    with pytest.raises(InputError, match=match) as e:
        reader(str(path), images)
    assert path.name in _one_line(e)


@pytest.fixture
def three_images(tmp_path):
    return [_png(tmp_path / "imgs" / f"img_{i:03d}.png", (64, 48)) for i in range(3)]


class TestReadKnownIntrinsics:
    def test_shared_and_per_image_forms(self, tmp_path, three_images):
        f = tmp_path / "K.json"
        f.write_text(json.dumps({"fx": 50, "fy": 51, "cx": 31.5, "cy": 23.5}))
        shared = read_known_intrinsics(str(f), three_images)
        assert sorted(shared) == [0, 1, 2] and shared[2][1, 1] == 51.0 and shared[0][2, 2] == 1.0
        f.write_text(json.dumps({"K": [[50, 0, 31.5], [0, 51, 23.5], [0, 0, 1]]}))
        assert read_known_intrinsics(str(f), three_images)[1][0, 2] == 31.5
        f.write_text(json.dumps({"img_002.png": [[40, 0, 30], [0, 40, 20], [0, 0, 1]],
                                 "img_000.png": {"fx": 45, "fy": 45, "cx": 32, "cy": 24}}))
        per = read_known_intrinsics(str(f), three_images)
        assert sorted(per) == [0, 2] and per[0][0, 0] == 45.0 and per[2][1, 2] == 20.0

    def test_missing_images_logged(self, tmp_path, three_images, caplog):
        f = tmp_path / "K.json"
        f.write_text(json.dumps({"img_001.png": {"fx": 45, "fy": 45, "cx": 32, "cy": 24}}))
        with caplog.at_level(logging.WARNING, logger="dust3r.inputs"):
            read_known_intrinsics(str(f), three_images)
        assert "img_000.png" in caplog.text and "img_002.png" in caplog.text

    def test_principal_point_checked_against_each_image(self, tmp_path):
        paths = [_png(tmp_path / "small.png", (64, 48)), _png(tmp_path / "large.png", (640, 480))]
        f = tmp_path / "K.json"
        f.write_text(json.dumps({"fx": 500, "fy": 500, "cx": 320, "cy": 240}))
        with pytest.raises(InputError, match="principal point") as e:
            read_known_intrinsics(str(f), paths)
        assert "small.png" in _one_line(e)
        assert read_known_intrinsics(str(f), paths, image_sizes=[(640, 480), (640, 480)])[0][0, 2] == 320.0

    def test_duplicate_base_names(self, tmp_path):
        paths = [_png(tmp_path / "dupA" / "same.png"), _png(tmp_path / "dupB" / "same.png")]
        f = tmp_path / "K.json"
        f.write_text(json.dumps({"same.png": {"fx": 45, "fy": 45, "cx": 32, "cy": 24}}))
        with pytest.raises(InputError, match="ambiguous") as e:
            read_known_intrinsics(str(f), paths)
        assert "dupA" in _one_line(e) and "dupB" in _one_line(e)
        f.write_text(json.dumps({"dupB/same.png": {"fx": 45, "fy": 45, "cx": 32, "cy": 24}}))
        assert list(read_known_intrinsics(str(f), paths)) == [1]

    @pytest.mark.parametrize("content,match", [
        ("{not json", "cannot read"),
        (json.dumps({"other.png": {"fx": 1, "fy": 1, "cx": 0, "cy": 0}}), "not one of the input images"),
        (json.dumps({"fx": -5, "fy": 1, "cx": 0, "cy": 0}), "positive"),
        (json.dumps({"img_001.png": {"fx": 50}}), "missing fy, cx, cy"),
        (json.dumps({"img_001.png": {"fx": "50", "fy": 1, "cx": 0, "cy": 0}}), "numbers"),
        (json.dumps({"K": [[50, 0, 32], [0, 50, 24], [0, 0, 0]]}), "last row"),
        (json.dumps({"img_000.png": {"fx": 50, "fy": 50, "cx": -99999, "cy": 1e12}}), "principal point"),
        (json.dumps([1, 2, 3]), "3x3"),
        (json.dumps("text"), "JSON object"),
    ])
    def test_refused(self, tmp_path, three_images, content, match):
        _assert_file_refused(read_known_intrinsics, tmp_path / "K.json", content, match, three_images)

    def test_missing_file(self, tmp_path, three_images):
        with pytest.raises(InputError, match="not found"):
            read_known_intrinsics(str(tmp_path / "none.json"), three_images)


class TestReadKnownPoses:
    def test_forms(self, tmp_path, three_images):
        T = TestCheckCam2world.pose(0.2)
        f = tmp_path / "poses.json"
        f.write_text(json.dumps({"img_000.png": T.tolist(), "img_001.png": {"cam2world": T[:3].tolist()},
                                 "img_002.png": {"world2cam": np.linalg.inv(T).tolist()}}))
        poses = read_known_poses(str(f), three_images)
        assert sorted(poses) == [0, 1, 2]
        for i in range(3):
            np.testing.assert_allclose(poses[i], T, atol=1e-12)

    @pytest.mark.parametrize("content,match", [
        (json.dumps({"img_000.png": np.diag([1.0, 1.0, -1.0, 1.0]).tolist()}), "reflection"),
        (json.dumps({"img_000.png": {"pose": np.eye(4).tolist()}}), "cam2world"),
        (json.dumps({"x.png": np.eye(4).tolist()}), "not one of the input images"),
        (json.dumps([np.eye(4).tolist()]), "JSON object"),
    ])
    def test_refused(self, tmp_path, three_images, content, match):
        _assert_file_refused(read_known_poses, tmp_path / "poses.json", content, match, three_images)


class TestCheckCheckpointKind:
    def test_pth_class_read_without_weights(self, tiny_pth, monkeypatch):
        import torch
        path = tiny_pth("dust3r_tiny_linear")
        calls = []
        real_load = torch.load
        monkeypatch.setattr(torch, "load", lambda *a, **k: calls.append(k.get("mmap")) or real_load(*a, **k))
        assert check_checkpoint_kind(path, ("AsymmetricCroCo3DStereo", "AsymmetricMASt3R")) == "AsymmetricCroCo3DStereo"
        assert calls == [True]  # tensors memory-mapped, never read
        with pytest.raises(InputError, match=r"holds a DUSt3R model \(AsymmetricCroCo3DStereo\), but "
                                             r"AsymmetricMASt3R \(MASt3R\) is needed") as e:
            check_checkpoint_kind(path, "AsymmetricMASt3R")
        assert str(path) in _one_line(e)

    def test_hf_folder(self, tiny_hf):
        path = tiny_hf("dust3r_tiny_linear")
        assert check_checkpoint_kind(path, "AsymmetricCroCo3DStereo") == "AsymmetricCroCo3DStereo"
        with pytest.raises(InputError, match="holds a DUSt3R model"):
            check_checkpoint_kind(path, "AsymmetricMASt3R")
        config = json.loads((path / "config.json").read_text())
        (path / "config.json").write_text(json.dumps(dict(config, two_confs=True)))
        try:  # a MASt3R config (its keys, no model_class) is told apart
            assert check_checkpoint_kind(path, "AsymmetricMASt3R") == "AsymmetricMASt3R"
        finally:
            (path / "config.json").write_text(json.dumps(config))

    def test_bad_files(self, tiny_pth, tmp_path):
        data = tiny_pth("dust3r_tiny_linear").read_bytes()
        cases = {"truncated.pth": (data[: len(data) // 2], "truncated or corrupt"),
                 "text.pth": (b"not a checkpoint at all", "not a PyTorch checkpoint"),
                 "empty.pth": (b"", "empty")}
        for name, (content, match) in cases.items():
            (tmp_path / name).write_bytes(content)
            with pytest.raises(InputError, match=match) as e:
                check_checkpoint_kind(tmp_path / name, "AsymmetricMASt3R")
            assert name in _one_line(e)

    def test_state_dict_only_and_missing(self, tmp_path):
        import torch
        torch.save({"model": {"w": torch.zeros(2)}}, tmp_path / "bare.pth")
        with pytest.raises(InputError, match="no model description"):
            check_checkpoint_kind(tmp_path / "bare.pth", "AsymmetricMASt3R")
        with pytest.raises(InputError, match="checkpoint not found") as e:
            check_checkpoint_kind(tmp_path / "missing.pth", "AsymmetricMASt3R")
        assert "missing.pth" in _one_line(e)
        (tmp_path / "folder").mkdir()
        with pytest.raises(InputError, match="no config.json"):
            check_checkpoint_kind(tmp_path / "folder", "AsymmetricMASt3R")

    def test_hub_names(self):
        assert check_checkpoint_kind("naver/MASt3R_ViTLarge_BaseDecoder_512_catmlpdpt_metric",
                                     "AsymmetricMASt3R") == "AsymmetricMASt3R"
        assert check_checkpoint_kind("someone/finetuned", "AsymmetricMASt3R") is None
        with pytest.raises(InputError, match="DUSt3R"):
            check_checkpoint_kind("naver/DUSt3R_ViTLarge_BaseDecoder_512_dpt", "AsymmetricMASt3R")


def test_result_names_follow_the_export_registry():
    """dust3r.inputs keeps its own copy (it must import without torch); it must list what export_all writes."""
    from dust3r.export import OUTPUT_NAMES
    from dust3r.inputs.options import RESULT_NAMES

    assert tuple(RESULT_NAMES) == tuple(OUTPUT_NAMES)
