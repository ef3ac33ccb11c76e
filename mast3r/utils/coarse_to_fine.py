"""Coarse-to-fine matching: choosing pairs of crops of two large images that cover their coarse matches.

Cells are ``(left, top, right, bottom)`` integer boxes (right / bottom exclusive). For each cell of an overlapping
grid of one image, the coarse matches falling in it give a matching window in the other image (centred on the
mean of the matched points, scaled by their spread); the window pairs are then picked greedily until 90 % of
the (Gaussian-weighted) correspondences are covered. Same names and behaviour as the original module.
"""
from __future__ import annotations

from typing import Iterator, Optional, Sequence, Tuple

import numpy as np

__all__ = ["crop_tag", "crop_slice", "multiple_of_16", "pos2d_in_rect", "greedy_selection", "select_pairs_of_crops"]


def crop_tag(cell) -> str:
    """``'[top:bottom,left:right]'`` of a cell."""
    return f"[{cell[1]}:{cell[3]},{cell[0]}:{cell[2]}]"


def crop_slice(cell) -> Tuple[slice, slice]:
    """``(rows, cols)`` slices of a cell, to index an (H, W, ...) array."""
    return slice(cell[1], cell[3]), slice(cell[0], cell[2])


def _start_pos(total_size: int, win_size: int, overlap: float) -> np.ndarray:
    """Start offsets of windows of ``win_size`` covering ``total_size`` with at least ``overlap`` between
    neighbours; the first starts at 0, the last ends at ``total_size``."""
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    if total_size < win_size:
        raise ValueError(f"window {win_size} larger than the size {total_size}")
    last = total_size - win_size
    count = 2 + int((last - 1) // (win_size * (1 - overlap)))
    return np.linspace(0, last, count).round().astype(int)


def multiple_of_16(x):
    """``x`` rounded down to a multiple of 16."""
    return (x // 16) * 16


def _make_overlapping_grid(H: int, W: int, size: int, overlap: float) -> np.ndarray:
    """(n, 4) cells of an overlapping grid whose windows have long side ``size`` (multiples of 16)."""
    win_h = multiple_of_16(H * size // max(H, W))
    win_w = multiple_of_16(W * size // max(H, W))
    xs, ys = _start_pos(W, win_w, overlap), _start_pos(H, win_h, overlap)
    x0, y0 = np.meshgrid(xs, ys, indexing="xy")
    x0, y0 = x0.ravel(), y0.ravel()
    return np.stack([x0, y0, x0 + win_w, y0 + win_h], axis=-1)


def _cell_size(cells: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    width, height = cells[:, 2] - cells[:, 0], cells[:, 3] - cells[:, 1]
    if width.min() < 0 or height.min() < 0:
        raise ValueError("cells with negative size")
    return width, height


def _norm_windows(cells: np.ndarray, H2: int, W2: int, forced_resolution: Optional[Sequence[int]] = None) -> np.ndarray:
    """Resize cells around their centre to a 4:3 (or 3:4) aspect ratio, or to ``forced_resolution`` (H, W), then
    shift them inside the (H2, W2) image; returns integer cells."""
    width, height = _cell_size(cells)
    new_w, new_h = width.clip(max=W2).astype(float), height.clip(max=H2).astype(float)
    if forced_resolution is None:
        portrait = width < height
        new_w[portrait] = (new_h[portrait] * 3.01 / 4).clip(max=W2)
        new_h[~portrait] = (new_w[~portrait] * 3.01 / 4).clip(max=H2)
    else:
        new_h[:], new_w[:] = forced_resolution[0], forced_resolution[1]
    grow = np.stack([new_w - width, new_h - height], axis=-1) / 2           # (n, 2) half growth in x, y
    out = np.floor(np.concatenate([cells[:, :2] - grow, cells[:, 2:] + grow], axis=-1)).astype(int)
    # flooring may leave a cell one pixel off its target size: move its top-left corner
    w_now, h_now = _cell_size(out)
    out[:, 0] += w_now - new_w.astype(int)
    out[:, 1] += h_now - new_h.astype(int)
    # shift inside the image: first away from the top-left border, then from the bottom-right one
    out -= np.tile(out[:, :2].clip(max=0), 2)
    out -= np.tile(np.stack([out[:, 2].clip(min=W2) - W2, out[:, 3].clip(min=H2) - H2], axis=-1), 2)
    w_out, h_out = _cell_size(out)
    if not (np.all(w_out == new_w.astype(int)) and np.all(h_out == new_h.astype(int))):
        raise AssertionError("Error, output is not of the expected shape.")
    if np.any(w_out > W2) or np.any(h_out > H2):
        raise AssertionError("windows larger than the image")
    return out


def _weight_pixels(cells: np.ndarray, pix: np.ndarray, assigned: np.ndarray, gauss_var: float = 2) -> np.ndarray:
    """(n_cells, n_pix) Gaussian weight of each assigned pixel by its distance to the cell centre (in cell sizes)."""
    centre = (cells[:, :2] + cells[:, 2:]) / 2
    width, height = _cell_size(cells)
    rel = (pix[None] - centre[:, None]) / np.stack([width, height], axis=-1)[:, None]
    if assigned.shape != rel.shape[:2]:
        raise ValueError(f"assigned has shape {assigned.shape}, expected {rel.shape[:2]}")
    return np.where(assigned, np.exp(-gauss_var * np.square(rel).sum(axis=-1)), 0)


def pos2d_in_rect(p1: np.ndarray, cell1) -> np.ndarray:
    """Whether points (N, 2) fall in a cell ``(l, t, r, b)`` (each entry may be an (n, 1) column: (n, N) result)."""
    x, y = p1.T
    left, top, right, bottom = cell1
    return (left <= x) & (x < right) & (top <= y) & (y < bottom)


def _score_cell(cell1: np.ndarray, H2: int, W2: int, p1: np.ndarray, p2: np.ndarray, min_corres: int = 10,
                forced_resolution: Optional[Sequence[int]] = None):
    """For the cells of image 1 with at least ``min_corres`` matches: the matching windows of image 2 and the
    (n, N) correspondence weights. Returns ``(cell1, cell2, weights)``."""
    if p1.shape != p2.shape:
        raise ValueError(f"p1 and p2 differ in shape: {p1.shape} != {p2.shape}")
    assigned = pos2d_in_rect(p1, cell1[None].T)
    keep = assigned.sum(axis=1) >= min_corres
    cell1, assigned = cell1[keep], assigned[keep]
    if not keep.any():
        return cell1, cell1, assigned
    nan_p1 = np.where(assigned[..., None], p1[None].astype(np.float32), np.nan)
    nan_p2 = np.where(assigned[..., None], p2[None].astype(np.float32), np.nan)
    centre2 = np.nanmean(nan_p2, axis=1)
    lo1, hi1 = np.nanquantile(nan_p1, (0.1, 0.9), axis=1)
    lo2, hi2 = np.nanquantile(nan_p2, (0.1, 0.9), axis=1)
    spread1, spread2 = (hi1 - lo1).clip(20.0), (hi2 - lo2).clip(20.0)
    size2 = (cell1[:, 2:4] - cell1[:, 0:2]) * spread2 / spread1
    cell2 = _norm_windows(np.concatenate([centre2 - size2 / 2, centre2 + size2 / 2], axis=-1), H2, W2,
                          forced_resolution=forced_resolution)
    weights = _weight_pixels(cell1, p1, assigned) * _weight_pixels(cell2, p2, assigned)
    return cell1, cell2, weights


def greedy_selection(corres_weights: np.ndarray, target: float = 0.9) -> list:
    """Indices of cell pairs picked greedily (most remaining weight first) until ``target`` of the total
    correspondence weight (each correspondence counted at its best pair) is covered."""
    if not 0 < target <= 1:
        raise ValueError(f"target must be in (0, 1], got {target}")
    weights = corres_weights.copy()
    goal = target * weights.max(axis=0).sum()
    picked, covered = [], np.zeros(weights.shape[1])
    while covered.sum() < goal:
        best = int(weights.sum(axis=1).argmax())
        picked.append(best)
        covered += weights[best]
        weights = (weights - weights[best]).clip(min=0)
    return picked


def select_pairs_of_crops(img_q, img_b, pos2d_in_query, pos2d_in_ref, maxdim: int = 512, overlap: float = .5,
                          forced_resolution=None) -> Iterator[tuple]:
    """Pairs of crops of ``img_q`` and ``img_b`` ((H, W, ...) arrays) covering their coarse matches.

    Args:
        pos2d_in_query, pos2d_in_ref: (N, 2) matched pixels in ``img_q`` and ``img_b``.
        maxdim: long side of the crops; overlap: minimum overlap of neighbouring grid cells.
        forced_resolution: None, one (H, W) for both images or ``[(H, W) of img_q crops, (H, W) of img_b crops]``.

    Yields:
        ``(cell_q, cell_b, pair_tag)``: integer cells ``(l, t, r, b)`` and a function naming the pair.
    """
    grid_q = _make_overlapping_grid(*img_q.shape[:2], maxdim, overlap)
    grid_b = _make_overlapping_grid(*img_b.shape[:2], maxdim, overlap)
    if forced_resolution is None:
        res_q = res_b = None
    elif len(forced_resolution) != 2:
        raise ValueError(f"forced_resolution must be (H, W) or a pair of them, got {forced_resolution}")
    elif np.ndim(forced_resolution[0]) == 0:
        res_q = res_b = forced_resolution
    else:
        res_q, res_b = forced_resolution
    grid_q = _norm_windows(grid_q.astype(float), *img_q.shape[:2], forced_resolution=res_q)
    grid_b = _norm_windows(grid_b.astype(float), *img_b.shape[:2], forced_resolution=res_b)
    from_q = _score_cell(grid_q, *img_b.shape[:2], pos2d_in_query, pos2d_in_ref, forced_resolution=res_b)
    cb, cq, wb = _score_cell(grid_b, *img_q.shape[:2], pos2d_in_ref, pos2d_in_query, forced_resolution=res_q)
    cell1, cell2, weights = (np.concatenate(parts) for parts in zip(from_q, (cq, cb, wb)))
    if len(weights) == 0:
        return
    for i in greedy_selection(weights, target=0.9):
        def pair_tag(qi, bi, i=i):
            return str(qi) + crop_tag(cell1[i]), str(bi) + crop_tag(cell2[i])
        yield cell1[i], cell2[i], pair_tag
