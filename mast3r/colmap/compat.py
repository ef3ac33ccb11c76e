"""The original ``mast3r.colmap.database`` / ``mast3r.colmap.mapping`` helpers, by name, for code that calls them.

They drive a kapture ``COLMAPDatabase`` (``add_camera``, ``add_image``, ``add_keypoints``, ``add_matches``,
``add_two_view_geometry``) with a whole scene's matches in memory, as the original did. New code should use
:func:`mast3r.colmap.run_colmap_mapping` (streamed, resumable, pycolmap's own database). Differences from the
original: ``viz`` is ignored (no matplotlib window), dense matching is refused with a ValueError, tracks are
built with a connected-components pass instead of Python dictionaries (same tracks), the original's cache
files are read with ``weights_only=True``.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["convert_im_matches_pairs", "get_im_matches", "get_im_matches_from_cache", "export_images",
           "export_matches", "scene_prepare_images", "remove_duplicates", "kapture_import_image_folder_or_list",
           "run_mast3r_matching"]

_MODEL_IDS = {"SIMPLE_PINHOLE": 0, "PINHOLE": 1, "SIMPLE_RADIAL": 2, "OPENCV": 4}


def _camera_params(model: str, K: np.ndarray) -> List[float]:
    """COLMAP parameters of ``model`` read from a (3, 3) pinhole ``K`` as is (both database writers' table)."""
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    f = 0.5 * (fx + fy)
    return {"SIMPLE_PINHOLE": [f, cx, cy], "PINHOLE": [fx, fy, cx, cy], "SIMPLE_RADIAL": [f, cx, cy, 0.0],
            "OPENCV": [fx, fy, cx, cy, 0.0, 0.0, 0.0, 0.0]}[model]


def _hw(view: Dict[str, Any], key: str = "true_shape") -> Tuple[int, int]:
    return tuple(int(v) for v in np.asarray(view[key]).reshape(-1)[:2])


def convert_im_matches_pairs(img0, img1, image_to_colmap, im_keypoints, matches_im0, matches_im1, viz=False):
    """Matched pixels of two views -> ``(idx0, idx1, (K, 2) flat pixel pairs)`` ordered by COLMAP image id; counts
    every matched pixel in ``im_keypoints[idx]``."""
    if viz:
        logger.info("convert_im_matches_pairs: viz is not supported, ignored")
    ravel = []
    for view, xy in ((img0, matches_im0), (img1, matches_im1)):
        H, W = _hw(view)
        with np.errstate(invalid="ignore"):
            q = np.round(np.asarray(xy, dtype=np.float64)).astype(np.int64).reshape(-1, 2)
        flat = q[:, 0].clip(0, W - 1) + W * q[:, 1].clip(0, H - 1)
        ravel.append(flat)
        counts = im_keypoints[view["idx"]]
        for m, c in zip(*np.unique(flat, return_counts=True)):
            counts[int(m)] = counts.get(int(m), 0) + int(c)
    idx0, idx1 = img0["idx"], img1["idx"]
    if image_to_colmap[idx0]["colmap_imid"] > image_to_colmap[idx1]["colmap_imid"]:
        idx0, idx1, ravel = idx1, idx0, ravel[::-1]
    return idx0, idx1, np.unique(np.stack(ravel, axis=-1), axis=0)


def get_im_matches(pred1, pred2, pairs, image_to_colmap, im_keypoints, conf_thr, is_sparse=True, subsample=8,
                   pixel_tol=0, viz=False, device="cuda"):
    """``{(idx0, idx1): (K, 2) flat pixel pairs}`` from batched predictions (MASt3R descriptors, or DUSt3R's 3D
    points)."""
    from mast3r.fast_nn import extract_correspondences_nonsym

    if not is_sparse:
        raise ValueError("dense matching is not supported; use is_sparse=True")
    im_matches = {}
    for i, (view0, view1) in enumerate(pairs):
        if "desc" in pred1:
            maps, confs, key = (pred1["desc"][i], pred2["desc"][i]), (pred1["desc_conf"][i], pred2["desc_conf"][i]), \
                "pred_desc"
        else:
            maps, confs, key = (pred1["pts3d"][i], pred2["pts3d_in_other_view"][i]), (pred1["conf"][i],
                                                                                      pred2["conf"][i]), "3d"
        xy0, xy1, conf = extract_correspondences_nonsym(*maps, *confs, subsample=subsample, device=device,
                                                        pixel_tol=pixel_tol, ptmap_key=key)
        keep = (conf >= conf_thr).cpu().numpy()
        if keep.any():
            a, b, m = convert_im_matches_pairs(view0, view1, image_to_colmap, im_keypoints,
                                               xy0.cpu().numpy()[keep], xy1.cpu().numpy()[keep], viz)
            im_matches[(a, b)] = m
    return im_matches


def get_im_matches_from_cache(pairs, cache_path, desc_conf, subsample, image_to_colmap, im_keypoints, conf_thr,
                              viz=False, device="cuda"):
    """As :func:`get_im_matches`, from the original's correspondence files (``corres_conf=...``, see
    :func:`mast3r.cloud_opt.symmetric_forward.forward_mast3r`), read with ``weights_only=True``."""
    import torch

    from mast3r.cloud_opt.symmetric_forward import hash_md5

    folder = os.path.join(cache_path, f"corres_conf={desc_conf}_subsample={subsample}")
    im_matches = {}
    for view0, view1 in pairs:
        h0, h1 = hash_md5(view0["instance"]), hash_md5(view1["instance"])
        path = os.path.join(folder, f"{h0}-{h1}.pth")
        if os.path.isfile(path):
            _, (xy0, xy1, confs) = torch.load(path, map_location="cpu", weights_only=True)
        else:
            _, (xy1, xy0, confs) = torch.load(os.path.join(folder, f"{h1}-{h0}.pth"), map_location="cpu",
                                              weights_only=True)
        keep = (confs >= conf_thr).numpy()
        if keep.any():
            a, b, m = convert_im_matches_pairs(view0, view1, image_to_colmap, im_keypoints, xy0.numpy()[keep],
                                               xy1.numpy()[keep], viz)
            im_matches[(a, b)] = m
    return im_matches


def _to_orig(view: Dict[str, Any]) -> np.ndarray:
    """(3, 3) map network pixels -> original pixels, both with the top-left pixel's corner at 0 (the original's
    ``to_orig``; taken from the view or from its resize record)."""
    if "to_orig" in view:
        return np.asarray(view["to_orig"], dtype=np.float64)
    from dust3r.utils.image_coords import intrinsics_to_original

    A = np.asarray(intrinsics_to_original(np.eye(3), view), dtype=np.float64)  # pixel-centre convention
    A[:2, 2] += 0.5 - 0.5 * A[[0, 1], [0, 1]]
    return A


def export_images(db, images, image_paths, focals, ga_world_to_cam, camera_model):
    """Add one camera and one image per view to a kapture ``COLMAPDatabase``; returns ``(image_to_colmap,
    im_keypoints)``. ``focals``: None (COLMAP's guess, no prior), per-view focals or (3, 3) intrinsics (network
    pixels); ``ga_world_to_cam``: optional (N, 4, 4) pose priors."""
    from dust3r.export import rotmat_to_qvec

    if camera_model not in _MODEL_IDS:
        raise ValueError(f"invalid camera model {camera_model}")
    image_to_colmap, im_keypoints = {}, {}
    for idx, path in enumerate(image_paths):
        im_keypoints[idx] = {}
        H, W = _hw(images[idx], "orig_shape")
        A = _to_orig(images[idx])
        if focals is None:
            fx = fy = 1.2 * max(W, H)
            cx, cy, prior = W / 2.0, H / 2.0, False
        else:
            f = np.asarray(focals[idx], dtype=np.float64)
            K = f if f.shape == (3, 3) else None
            fx, fy = (K[0, 0], K[1, 1]) if K is not None else (float(f.reshape(-1)[0]),) * 2
            fx, fy = fx * A[0, 0], fy * A[1, 1]
            cx, cy = (K[0, 2] * A[0, 0], K[1, 2] * A[1, 1]) if K is not None else (W / 2.0, H / 2.0)
            prior = True
        params = _camera_params(camera_model, np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]]))
        camid = db.add_camera(_MODEL_IDS[camera_model], int(W), int(H), np.asarray(params, np.float64),
                              prior_focal_length=prior)
        if ga_world_to_cam is None:
            prior_q, prior_t = np.zeros(4), np.zeros(3)
        else:
            prior_q = rotmat_to_qvec(np.asarray(ga_world_to_cam[idx])[:3, :3])
            prior_t = np.asarray(ga_world_to_cam[idx])[:3, 3]
        imid = db.add_image(path, camid, prior_q=prior_q, prior_t=prior_t)
        image_to_colmap[idx] = {"colmap_imid": imid, "colmap_camid": camid}
    return image_to_colmap, im_keypoints


def export_matches(db, images, image_to_colmap, im_keypoints, im_matches, min_len_track, skip_geometric_verification):
    """Keypoints of the tracks of >= ``min_len_track`` observations and their matches into a kapture
    ``COLMAPDatabase``; returns the image pairs written (instance names)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    kps = {idx: np.array(sorted(im_keypoints[idx]), dtype=np.int64) for idx in im_keypoints}
    order = sorted(kps)
    offsets = dict(zip(order, np.cumsum([0] + [len(kps[i]) for i in order])[:-1]))
    total = sum(len(k) for k in kps.values())
    rows = [np.searchsorted(kps[a], m[:, 0]) + offsets[a] for (a, b), m in im_matches.items()]
    cols = [np.searchsorted(kps[b], m[:, 1]) + offsets[b] for (a, b), m in im_matches.items()]
    r = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    c = np.concatenate(cols) if cols else np.zeros(0, np.int64)
    _, label = connected_components(coo_matrix((np.ones(len(r)), (r, c)), shape=(total, total)), directed=False)
    size = np.bincount(label, minlength=label.max() + 1 if total else 0)
    keep_of = {i: size[label[offsets[i]:offsets[i] + len(kps[i])]] >= min_len_track for i in order}
    new_index = {}
    for idx in order:
        kept = kps[idx][keep_of[idx]]
        new_index[idx] = np.full(len(kps[idx]), -1, np.int64)
        new_index[idx][keep_of[idx]] = np.arange(len(kept))
        if not len(kept):
            continue
        H, W = _hw(images[idx])
        xy = np.stack([kept % W, kept // W], axis=1).astype(np.float64) + 0.5
        A = _to_orig(images[idx])
        xy = xy * A[[0, 1], [0, 1]] + A[:2, 2]
        H0, W0 = _hw(images[idx], "orig_shape")
        xy[:, 0] = xy[:, 0].clip(0, W0 - 0.01)
        xy[:, 1] = xy[:, 1].clip(0, H0 - 0.01)
        db.add_keypoints(image_to_colmap[idx]["colmap_imid"], xy.astype(np.float32))
    written = []
    for (a, b), m in im_matches.items():
        ids = np.stack([new_index[a][np.searchsorted(kps[a], m[:, 0])],
                        new_index[b][np.searchsorted(kps[b], m[:, 1])]], axis=1)
        ids = ids[(ids >= 0).all(axis=1)]
        if len(ids):
            ida, idb = image_to_colmap[a]["colmap_imid"], image_to_colmap[b]["colmap_imid"]
            written.append((images[a]["instance"], images[b]["instance"]))
            db.add_matches(ida, idb, ids)
            if skip_geometric_verification:
                db.add_two_view_geometry(ida, idb, ids)
    return written


def scene_prepare_images(root: str, maxdim: int, patch_size: int, image_paths: List[str]):
    """Load ``root/<path>`` for each path (long side ``maxdim``), views with ``to_orig``, ``orig_shape`` and the
    relative path as ``instance``."""
    from dust3r.utils.image import load_images

    views = load_images([os.path.join(root, p) for p in image_paths], size=maxdim, verbose=False,
                        patch_size=patch_size)
    for idx, (view, path) in enumerate(zip(views, image_paths)):
        view.update(idx=idx, instance=path, to_orig=_to_orig(view), orig_shape=np.int32(_hw(view, "orig_shape")))
    return views


def remove_duplicates(images: Sequence[Dict[str, Any]], image_pairs):
    """``[(images[i], images[j])]`` for ``image_pairs = [((i, name_i), (j, name_j)), ...]``, each unordered pair
    once."""
    seen, pairs = set(), []
    for (i, _), (j, _) in image_pairs:
        key = (min(i, j), max(i, j))
        if key not in seen:
            seen.add(key)
            pairs.append((images[i], images[j]))
    return pairs


def kapture_import_image_folder_or_list(images_path, use_single_camera: bool = False):
    """A ``kapture.Kapture`` with the camera records of an image folder (recursive) or ``(root, [relative paths])``
    (needs the kapture package); unreadable files are skipped with a log line."""
    try:
        import kapture
        from kapture.utils.paths import path_secure
    except ImportError:
        raise ImportError("kapture_import_image_folder_or_list needs kapture (pip install kapture)") from None
    import PIL.Image

    if isinstance(images_path, (str, os.PathLike)):
        root = os.fspath(images_path)
        files = sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)
    else:
        root, files = images_path
    sensors, records = kapture.Sensors(), kapture.RecordsCamera()
    for n, name in enumerate(files):
        try:
            with PIL.Image.open(os.path.join(root, name)) as im:
                size = list(im.size)
        except (OSError, PIL.UnidentifiedImageError):
            logger.info("skipping invalid image file %s", name)
            continue
        camera_id = "sensor" if use_single_camera else f"sensor{n}"
        if camera_id in sensors:
            if list(sensors[camera_id].camera_params[:2]) != size:
                raise ValueError(f"{name}: {size[0]}x{size[1]} differs from the shared camera's size")
        else:
            sensors[camera_id] = kapture.Camera(kapture.CameraType.UNKNOWN_CAMERA, size)
        records[(n, camera_id)] = path_secure(name)
    return kapture.Kapture(sensors=sensors, records_camera=records)


def run_mast3r_matching(model, maxdim, patch_size, device, kdata, root_path, image_pairs_kapture, colmap_db,
                        dense_matching, pixel_tol, conf_thr, skip_geometric_verification, min_len_track):
    """The original's kapture path: match the pairs (names) of ``kdata``'s camera records with ``model`` and write
    keypoints and matches into ``colmap_db`` (whose cameras and images kapture already wrote); returns the pairs
    written."""
    from kapture.converter.colmap.database_extra import get_colmap_camera_ids_from_db, get_colmap_image_ids_from_db

    from dust3r.inference import inference

    if dense_matching:
        raise ValueError("dense matching is not supported")
    image_paths = kdata.records_camera.data_list()
    to_idx = {p: k for k, p in enumerate(image_paths)}
    ts_of = {kdata.records_camera[ts, cam]: (ts, cam) for ts, cam in kdata.records_camera.key_pairs()}
    images = scene_prepare_images(root_path, maxdim, patch_size, image_paths)
    pairs = remove_duplicates(images, [((to_idx[a], a), (to_idx[b], b)) for a, b in image_pairs_kapture])
    cam_ids = get_colmap_camera_ids_from_db(colmap_db, kdata.records_camera)
    im_ids = get_colmap_image_ids_from_db(colmap_db)
    image_to_colmap = {k: {"colmap_imid": im_ids[p], "colmap_camid": cam_ids[ts_of[p][1]]} for p, k in to_idx.items()}
    im_keypoints = {k: {} for k in range(len(image_paths))}
    im_matches = {}
    for start in range(0, len(pairs), 4):
        chunk = pairs[start:start + 4]
        out = inference(chunk, model, device, batch_size=1, verbose=False)
        im_matches.update(get_im_matches(out["pred1"], out["pred2"], chunk, image_to_colmap, im_keypoints, conf_thr,
                                         pixel_tol=pixel_tol, device=device))
    written = export_matches(colmap_db, images, image_to_colmap, im_keypoints, im_matches, min_len_track,
                             skip_geometric_verification)
    colmap_db.commit()
    return written
