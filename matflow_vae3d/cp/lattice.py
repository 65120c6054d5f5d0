"""Slip and twin systems, Schmid matrices and interaction matrices, as DAMASK defines them.

Written after DAMASK's ``src/crystal.f90`` (formerly ``lattice.f90``): the same systems in
the same order per family, the same Miller(-Bravais) to Cartesian conversion for hP
(x || a1, z || c), the same interaction-type tables (rows: reacting system, columns:
acting system) and the same characteristic twin shears.

Families that a phase switches off (``N = 0``) are skipped, partial families take their
first ``N`` systems, exactly as DAMASK's ``buildCoordinateSystem``/``buildInteraction``.

Orientation of the tables: DAMASK lists each table as ``reshape([...], shape(M))``
(column-major), so a written line of the Fortran source is a column ``M(:, j)``, and
``buildInteraction`` reads ``M(acting, reacting)``: each written line is one reacting
system. The strings below are those lines, so ``table[reacting, acting]``.
"""

from __future__ import annotations

import numpy as np

# --------------------------------------------------------------------------------- cF
CF_NSLIP = (12, 6)
CF_NTWIN = (12,)
CF_SLIP = np.array([
    # <110>{111}
    [0, 1, -1, 1, 1, 1], [-1, 0, 1, 1, 1, 1], [1, -1, 0, 1, 1, 1],
    [0, -1, -1, -1, -1, 1], [1, 0, 1, -1, -1, 1], [-1, 1, 0, -1, -1, 1],
    [0, -1, 1, 1, -1, -1], [-1, 0, -1, 1, -1, -1], [1, 1, 0, 1, -1, -1],
    [0, 1, 1, -1, 1, -1], [1, 0, -1, -1, 1, -1], [-1, -1, 0, -1, 1, -1],
    # <110>{110}
    [1, 1, 0, 1, -1, 0], [1, -1, 0, 1, 1, 0], [1, 0, 1, 1, 0, -1],
    [1, 0, -1, 1, 0, 1], [0, 1, 1, 0, 1, -1], [0, 1, -1, 0, 1, 1],
], dtype=float)
CF_TWIN = np.array([
    [-2, 1, 1, 1, 1, 1], [1, -2, 1, 1, 1, 1], [1, 1, -2, 1, 1, 1],
    [2, -1, 1, -1, -1, 1], [-1, 2, 1, -1, -1, 1], [-1, -1, -2, -1, -1, 1],
    [-2, -1, -1, 1, -1, -1], [1, 2, -1, 1, -1, -1], [1, -1, 2, 1, -1, -1],
    [2, 1, -1, -1, 1, -1], [-1, -2, -1, -1, 1, -1], [-1, 1, 2, -1, 1, -1],
], dtype=float)

_CF_SLIPSLIP = """
 1 2 2 4 7 5 3 5 5 4 6 7 10 11 10 11 12 13
 2 1 2 7 4 5 6 4 7 5 3 5 10 11 12 13 10 11
 2 2 1 5 5 3 6 7 4 7 6 4 12 13 10 11 10 11
 4 7 6 1 2 2 4 6 7 3 5 5 10 11 11 10 13 12
 7 4 6 2 1 2 5 3 5 6 4 7 10 11 13 12 11 10
 5 5 3 2 2 1 7 6 4 6 7 4 12 13 11 10 11 10
 3 5 5 4 6 7 1 2 2 4 7 6 11 10 11 10 12 13
 6 4 7 5 3 5 2 1 2 7 4 6 11 10 13 12 10 11
 6 7 4 7 6 4 2 2 1 5 5 3 13 12 11 10 10 11
 4 6 7 3 5 5 4 7 6 1 2 2 11 10 10 11 13 12
 5 3 5 6 4 7 7 4 6 2 1 2 11 10 12 13 11 10
 7 6 4 6 7 4 5 5 3 2 2 1 13 12 10 11 11 10
 10 10 12 10 10 12 11 11 13 11 11 13 1 8 9 9 9 9
 11 11 13 11 11 13 10 10 12 10 10 12 8 1 9 9 9 9
 10 12 10 11 13 11 11 13 11 10 12 10 9 9 1 8 9 9
 11 13 11 10 12 10 10 12 10 11 13 11 9 9 8 1 9 9
 12 10 10 13 11 11 12 10 10 13 11 11 9 9 9 9 1 8
 13 11 11 12 10 10 13 11 11 12 10 10 9 9 9 9 8 1
"""
_CF_SLIPTWIN = """
 1 1 1 3 3 3 2 2 2 3 3 3
 1 1 1 3 3 3 3 3 3 2 2 2
 1 1 1 2 2 2 3 3 3 3 3 3
 3 3 3 1 1 1 3 3 3 2 2 2
 3 3 3 1 1 1 2 2 2 3 3 3
 2 2 2 1 1 1 3 3 3 3 3 3
 2 2 2 3 3 3 1 1 1 3 3 3
 3 3 3 2 2 2 1 1 1 3 3 3
 3 3 3 3 3 3 1 1 1 2 2 2
 3 3 3 2 2 2 3 3 3 1 1 1
 2 2 2 3 3 3 3 3 3 1 1 1
 3 3 3 3 3 3 2 2 2 1 1 1
 4 4 4 4 4 4 4 4 4 4 4 4
 4 4 4 4 4 4 4 4 4 4 4 4
 4 4 4 4 4 4 4 4 4 4 4 4
 4 4 4 4 4 4 4 4 4 4 4 4
 4 4 4 4 4 4 4 4 4 4 4 4
 4 4 4 4 4 4 4 4 4 4 4 4
"""

# --------------------------------------------------------------------------------- cI
CI_NSLIP = (12, 12, 24)
CI_NTWIN = (12,)
CI_SLIP = np.array([
    # <111>{110}
    [1, -1, 1, 0, 1, 1], [-1, -1, 1, 0, 1, 1], [1, 1, 1, 0, -1, 1], [-1, 1, 1, 0, -1, 1],
    [-1, 1, 1, 1, 0, 1], [-1, -1, 1, 1, 0, 1], [1, 1, 1, -1, 0, 1], [1, -1, 1, -1, 0, 1],
    [-1, 1, 1, 1, 1, 0], [-1, 1, -1, 1, 1, 0], [1, 1, 1, -1, 1, 0], [1, 1, -1, -1, 1, 0],
    # <111>{112}
    [-1, 1, 1, 2, 1, 1], [1, 1, 1, -2, 1, 1], [1, 1, -1, 2, -1, 1], [1, -1, 1, 2, 1, -1],
    [1, -1, 1, 1, 2, 1], [1, 1, -1, -1, 2, 1], [1, 1, 1, 1, -2, 1], [-1, 1, 1, 1, 2, -1],
    [1, 1, -1, 1, 1, 2], [1, -1, 1, -1, 1, 2], [-1, 1, 1, 1, -1, 2], [1, 1, 1, 1, 1, -2],
    # <111>{123}
    [1, 1, -1, 1, 2, 3], [1, -1, 1, -1, 2, 3], [-1, 1, 1, 1, -2, 3], [1, 1, 1, 1, 2, -3],
    [1, -1, 1, 1, 3, 2], [1, 1, -1, -1, 3, 2], [1, 1, 1, 1, -3, 2], [-1, 1, 1, 1, 3, -2],
    [1, 1, -1, 2, 1, 3], [1, -1, 1, -2, 1, 3], [-1, 1, 1, 2, -1, 3], [1, 1, 1, 2, 1, -3],
    [1, -1, 1, 2, 3, 1], [1, 1, -1, -2, 3, 1], [1, 1, 1, 2, -3, 1], [-1, 1, 1, 2, 3, -1],
    [-1, 1, 1, 3, 1, 2], [1, 1, 1, -3, 1, 2], [1, 1, -1, 3, -1, 2], [1, -1, 1, 3, 1, -2],
    [-1, 1, 1, 3, 2, 1], [1, 1, 1, -3, 2, 1], [1, 1, -1, 3, -2, 1], [1, -1, 1, 3, 2, -1],
], dtype=float)
CI_TWIN = CI_SLIP[12:24].copy()  # <111>{112}, the same list as the second slip family

# cI interaction types as in DAMASK src/crystal.f90 (commits 0396332b7b69 and f71b1c4dc310,
# identical there): rows reacting, columns acting, families <111>{110} | <111>{112} |
# <111>{123}. 28 types (Madec & Kubin 2017 for the first 24 systems): 1 self, 2 same Burgers
# vector within {110} or within {112}, 3 coplanar {110}, 8/9 {110}-{112} with the same
# Burgers vector (planes perpendicular / not), 25/26/27 same Burgers vector between {110},
# {112} resp. {123} and {123}, 28 any other pair involving {123}; the rest are the other
# (non-collinear) pairs of the first two families.
_CI_SLIPSLIP = """
  1  3  6  6  7  5  4  2  4  2  7  5   18 18 11  8  9 13 17 14 13  9 17 14   28 25 28 28 25 28 28 28 28 25 28 28 25 28 28 28 28 28 28 25 28 28 28 25
  3  1  6  6  4  2  7  5  7  5  4  2   18 18  8 11 13  9 14 17  9 13 14 17   25 28 28 28 28 25 28 28 25 28 28 28 28 25 28 28 28 28 25 28 28 28 25 28
  6  6  1  3  5  7  2  4  5  7  2  4   11  8 18 18 17 14  9 13 17 14 13  9   28 28 28 25 28 28 25 28 28 28 28 25 28 28 25 28 28 25 28 28 28 25 28 28
  6  6  3  1  2  4  5  7  2  4  5  7    8 11 18 18 14 17 13  9 14 17  9 13   28 28 25 28 28 28 28 25 28 28 25 28 28 28 28 25 25 28 28 28 25 28 28 28
  7  5  4  2  1  3  6  6  2  4  7  5    9 17 13 14 18 11 18  8 13 17  9 14   28 28 25 28 28 28 28 25 28 28 25 28 28 28 28 25 25 28 28 28 25 28 28 28
  4  2  7  5  3  1  6  6  5  7  4  2   13 14  9 17 18  8 18 11  9 14 13 17   25 28 28 28 28 25 28 28 25 28 28 28 28 25 28 28 28 28 25 28 28 28 25 28
  5  7  2  4  6  6  1  3  7  5  2  4   17  9 14 13 11 18  8 18 17 13 14  9   28 28 28 25 28 28 25 28 28 28 28 25 28 28 25 28 28 25 28 28 28 25 28 28
  2  4  5  7  6  6  3  1  4  2  5  7   14 13 17  9  8 18 11 18 14  9 17 13   28 25 28 28 25 28 28 28 28 25 28 28 25 28 28 28 28 28 28 25 28 28 28 25
  5  7  4  2  2  4  7  5  1  3  6  6    9 17 14 13 13 17 14  9 18 11  8 18   28 28 25 28 28 28 28 25 28 28 25 28 28 28 28 25 25 28 28 28 25 28 28 28
  2  4  7  5  5  7  4  2  3  1  6  6   13 14 17  9  9 14 17 13 18  8 11 18   28 25 28 28 25 28 28 28 28 25 28 28 25 28 28 28 28 28 28 25 28 28 28 25
  7  5  2  4  7  5  2  4  6  6  1  3   17  9 13 14 17 13  9 14 11 18 18  8   28 28 28 25 28 28 25 28 28 28 28 25 28 28 25 28 28 25 28 28 28 25 28 28
  4  2  5  7  4  2  5  7  6  6  3  1   14 13  9 17 14  9 13 17  8 18 18 11   25 28 28 28 28 25 28 28 25 28 28 28 28 25 28 28 28 28 25 28 28 28 25 28
 19 19 10  8  9 12 16 15  9 12 16 15    1 20 24 24 23 22 21  2 23 22  2 21   28 28 26 28 28 28 28 26 28 28 26 28 28 28 28 26 26 28 28 28 26 28 28 28
 19 19  8 10 16 15  9 12 16 15  9 12   20  1 24 24 22 23  2 21 22 23 21  2   28 28 28 26 28 28 26 28 28 28 28 26 28 28 26 28 28 26 28 28 28 26 28 28
 10  8 19 19 12  9 15 16 15 16 12  9   24 24  1 20 21  2 23 22  2 21 23 22   26 28 28 28 28 26 28 28 26 28 28 28 28 26 28 28 28 28 26 28 28 28 26 28
  8 10 19 19 15 16 12  9 12  9 15 16   24 24 20  1  2 21 22 23 21  2 22 23   28 26 28 28 26 28 28 28 28 26 28 28 26 28 28 28 28 28 28 26 28 28 28 26
  9 12 16 15 19 19 10  8 12  9 16 15   23 21 22  2  1 24 20 24 23  2 22 21   28 26 28 28 26 28 28 28 28 26 28 28 26 28 28 28 28 28 28 26 28 28 28 26
 12  9 15 16 10  8 19 19 16 15 12  9   21 23  2 21 24  1 24 20  2 23 21 22   26 28 28 28 28 26 28 28 26 28 28 28 28 26 28 28 28 28 26 28 28 28 26 28
 16 15  9 12 19 19  8 10 15 16  9 12   22  2 23 22 20 24  1 24 22 21 23  2   28 28 28 26 28 28 26 28 28 28 28 26 28 28 26 28 28 26 28 28 28 26 28 28
 15 16 12  9  8 10 19 19  9 12 15 16    2 22 21 23 24 20 24  1 21 22  2 23   28 28 26 28 28 28 28 26 28 28 26 28 28 28 28 26 26 28 28 28 26 28 28 28
 12  9 16 15 12  9 16 15 19 19 10  8   23 21  2 22 23  2 21 22  1 24 24 20   26 28 28 28 28 26 28 28 26 28 28 28 28 26 28 28 28 28 26 28 28 28 26 28
  9 12 15 16 16 15 12  9 10  8 19 19   21 23 22  2  2 23 22 21 24  1 20 24   28 26 28 28 26 28 28 28 28 26 28 28 26 28 28 28 28 28 28 26 28 28 28 26
 16 15 12  9  9 12 15 16  8 10 19 19    2 22 23 21 21 22 23  2 24 20  1 24   28 28 26 28 28 28 28 26 28 28 26 28 28 28 28 26 26 28 28 28 26 28 28 28
 15 16  9 12 15 16  9 12 19 19  8 10   22  2 21 23 22 21  2 23 20 24 24  1   28 28 28 26 28 28 26 28 28 28 28 26 28 28 26 28 28 26 28 28 28 26 28 28
 28 25 28 28 28 25 28 28 28 28 28 25   28 28 26 28 28 26 28 28 26 28 28 28    1 28 28 28 28 27 28 28 27 28 28 28 28 27 28 28 28 28 27 28 28 28 27 28
 25 28 28 28 28 28 28 25 28 25 28 28   28 28 28 26 26 28 28 28 28 26 28 28   28  1 28 28 27 28 28 28 28 27 28 28 27 28 28 28 28 28 28 27 28 28 28 27
 28 28 28 25 25 28 28 28 25 28 28 28   26 28 28 28 28 28 28 26 28 28 26 28   28 28  1 28 28 28 28 27 28 28 27 28 28 28 28 27 27 28 28 28 27 28 28 28
 28 28 25 28 28 28 25 28 28 28 25 28   28 26 28 28 28 28 26 28 28 28 28 26   28 28 28  1 28 28 27 28 28 28 28 27 28 28 27 28 28 27 28 28 28 27 28 28
 25 28 28 28 28 28 28 25 28 25 28 28   28 28 28 26 26 28 28 28 28 26 28 28   28 27 28 28  1 28 28 28 28 27 28 28 27 28 28 28 28 28 28 27 28 28 28 27
 28 25 28 28 28 25 28 28 28 28 28 25   28 28 26 28 28 26 28 28 26 28 28 28   27 28 28 28 28  1 28 28 27 28 28 28 28 27 28 28 28 28 27 28 28 28 27 28
 28 28 25 28 28 28 25 28 28 28 25 28   28 26 28 28 28 28 26 28 28 28 28 26   28 28 28 27 28 28  1 28 28 28 28 27 28 28 27 28 28 27 28 28 28 27 28 28
 28 28 28 25 25 28 28 28 25 28 28 28   26 28 28 28 28 28 28 26 28 28 26 28   28 28 27 28 28 28 28  1 28 28 27 28 28 28 28 27 27 28 28 28 27 28 28 28
 28 25 28 28 28 25 28 28 28 28 28 25   28 28 26 28 28 26 28 28 26 28 28 28   27 28 28 28 28 27 28 28  1 28 28 28 28 27 28 28 28 28 27 28 28 28 27 28
 25 28 28 28 28 28 28 25 28 25 28 28   28 28 28 26 26 28 28 28 28 26 28 28   28 27 28 28 27 28 28 28 28  1 28 28 27 28 28 28 28 28 28 27 28 28 28 27
 28 28 28 25 25 28 28 28 25 28 28 28   26 28 28 28 28 28 28 26 28 28 26 28   28 28 27 28 28 28 28 27 28 28  1 28 28 28 28 27 27 28 28 28 27 28 28 28
 28 28 25 28 28 28 25 28 28 28 25 28   28 26 28 28 28 28 26 28 28 28 28 26   28 28 28 27 28 28 27 28 28 28 28  1 28 28 27 28 28 27 28 28 28 27 28 28
 25 28 28 28 28 28 28 25 28 25 28 28   28 28 28 26 26 28 28 28 28 26 28 28   28 27 28 28 27 28 28 28 28 27 28 28  1 28 28 28 28 28 28 27 28 28 28 27
 28 25 28 28 28 25 28 28 28 28 28 25   28 28 26 28 28 26 28 28 26 28 28 28   27 28 28 28 28 27 28 28 27 28 28 28 28  1 28 28 28 28 27 28 28 28 27 28
 28 28 25 28 28 28 25 28 28 28 25 28   28 26 28 28 28 28 26 28 28 28 28 26   28 28 28 27 28 28 27 28 28 28 28 27 28 28  1 28 28 27 28 28 28 27 28 28
 28 28 28 25 25 28 28 28 25 28 28 28   26 28 28 28 28 28 28 26 28 28 26 28   28 28 27 28 28 28 28 27 28 28 27 28 28 28 28  1 27 28 28 28 27 28 28 28
 28 28 28 25 25 28 28 28 25 28 28 28   26 28 28 28 28 28 28 26 28 28 26 28   28 28 27 28 28 28 28 27 28 28 27 28 28 28 28 27  1 28 28 28 27 28 28 28
 28 28 25 28 28 28 25 28 28 28 25 28   28 26 28 28 28 28 26 28 28 28 28 26   28 28 28 27 28 28 27 28 28 28 28 27 28 28 27 28 28  1 28 28 28 27 28 28
 28 25 28 28 28 25 28 28 28 28 28 25   28 28 26 28 28 26 28 28 26 28 28 28   27 28 28 28 28 27 28 28 27 28 28 28 28 27 28 28 28 28  1 28 28 28 27 28
 25 28 28 28 28 28 28 25 28 25 28 28   28 28 28 26 26 28 28 28 28 26 28 28   28 27 28 28 27 28 28 28 28 27 28 28 27 28 28 28 28 28 28  1 28 28 28 27
 28 28 28 25 25 28 28 28 25 28 28 28   26 28 28 28 28 28 28 26 28 28 26 28   28 28 27 28 28 28 28 27 28 28 27 28 28 28 28 27 27 28 28 28  1 28 28 28
 28 28 25 28 28 28 25 28 28 28 25 28   28 26 28 28 28 28 26 28 28 28 28 26   28 28 28 27 28 28 27 28 28 28 28 27 28 28 27 28 28 27 28 28 28  1 28 28
 28 25 28 28 28 25 28 28 28 28 28 25   28 28 26 28 28 26 28 28 26 28 28 28   27 28 28 28 28 27 28 28 27 28 28 28 28 27 28 28 28 28 27 28 28 28  1 28
 25 28 28 28 28 28 28 25 28 25 28 28   28 28 28 26 26 28 28 28 28 26 28 28   28 27 28 28 27 28 28 28 28 27 28 28 27 28 28 28 28 28 28 27 28 28 28  1
"""
# slip (reacting, 48) on twin (acting, 12): 1 slip plane = twin plane, 2 slip direction =
# twin direction, 3 other, 4 every {123} slip system (rows 25-48, built in _ci_sliptwin)
_CI_SLIPTWIN_110_112 = """
 3 3 3 2 2 3 3 3 3 2 3 3
 3 3 2 3 3 2 3 3 2 3 3 3
 3 2 3 3 3 3 2 3 3 3 3 2
 2 3 3 3 3 3 3 2 3 3 2 3
 2 3 3 3 3 3 3 2 3 3 2 3
 3 3 2 3 3 2 3 3 2 3 3 3
 3 2 3 3 3 3 2 3 3 3 3 2
 3 3 3 2 2 3 3 3 3 2 3 3
 2 3 3 3 3 3 3 2 3 3 2 3
 3 3 3 2 2 3 3 3 3 2 3 3
 3 2 3 3 3 3 2 3 3 3 3 2
 3 3 2 3 3 2 3 3 2 3 3 3
 1 3 3 3 3 3 3 2 3 3 2 3
 3 1 3 3 3 3 2 3 3 3 3 2
 3 3 1 3 3 2 3 3 2 3 3 3
 3 3 3 1 2 3 3 3 3 2 3 3
 3 3 3 2 1 3 3 3 3 2 3 3
 3 3 2 3 3 1 3 3 2 3 3 3
 3 2 3 3 3 3 1 3 3 3 3 2
 2 3 3 3 3 3 3 1 3 3 2 3
 3 3 2 3 3 2 3 3 1 3 3 3
 3 3 3 2 2 3 3 3 3 1 3 3
 2 3 3 3 3 3 3 2 3 3 1 3
 3 2 3 3 3 3 2 3 3 3 3 1
"""

_CI_TWINTWIN = """
 1 3 3 3 3 3 3 2 3 3 2 3
 3 1 3 3 3 3 2 3 3 3 3 2
 3 3 1 3 3 2 3 3 2 3 3 3
 3 3 3 1 2 3 3 3 3 2 3 3
 3 3 3 2 1 3 3 3 3 2 3 3
 3 3 2 3 3 1 3 3 2 3 3 3
 3 2 3 3 3 3 1 3 3 3 3 2
 2 3 3 3 3 3 3 1 3 3 2 3
 3 3 2 3 3 2 3 3 1 3 3 3
 3 3 3 2 2 3 3 3 3 1 3 3
 2 3 3 3 3 3 3 2 3 3 1 3
 3 2 3 3 3 3 2 3 3 3 3 1
"""

# --------------------------------------------------------------------------------- hP
HP_NSLIP = (3, 3, 6, 12, 6)
HP_NTWIN = (6, 6, 6, 6)
HP_SLIP = np.array([
    # basal <a>
    [2, -1, -1, 0, 0, 0, 0, 1], [-1, 2, -1, 0, 0, 0, 0, 1], [-1, -1, 2, 0, 0, 0, 0, 1],
    # prismatic <a>
    [2, -1, -1, 0, 0, 1, -1, 0], [-1, 2, -1, 0, -1, 0, 1, 0], [-1, -1, 2, 0, 1, -1, 0, 0],
    # 1st order pyramidal <a>
    [-1, 2, -1, 0, 1, 0, -1, 1], [-2, 1, 1, 0, 0, 1, -1, 1], [-1, -1, 2, 0, -1, 1, 0, 1],
    [1, -2, 1, 0, -1, 0, 1, 1], [2, -1, -1, 0, 0, -1, 1, 1], [1, 1, -2, 0, 1, -1, 0, 1],
    # 1st order pyramidal <c+a>
    [-2, 1, 1, 3, 1, 0, -1, 1], [-1, -1, 2, 3, 1, 0, -1, 1], [-1, -1, 2, 3, 0, 1, -1, 1],
    [1, -2, 1, 3, 0, 1, -1, 1], [1, -2, 1, 3, -1, 1, 0, 1], [2, -1, -1, 3, -1, 1, 0, 1],
    [2, -1, -1, 3, -1, 0, 1, 1], [1, 1, -2, 3, -1, 0, 1, 1], [1, 1, -2, 3, 0, -1, 1, 1],
    [-1, 2, -1, 3, 0, -1, 1, 1], [-1, 2, -1, 3, 1, -1, 0, 1], [-2, 1, 1, 3, 1, -1, 0, 1],
    # 2nd order pyramidal <c+a>
    [-1, -1, 2, 3, 1, 1, -2, 2], [1, -2, 1, 3, -1, 2, -1, 2], [2, -1, -1, 3, -2, 1, 1, 2],
    [1, 1, -2, 3, -1, -1, 2, 2], [-1, 2, -1, 3, 1, -2, 1, 2], [-2, 1, 1, 3, 2, -1, -1, 2],
], dtype=float)
HP_TWIN = np.array([
    # <-10.1>{10.2}: tension twins in Mg
    [-1, 0, 1, 1, 1, 0, -1, 2], [0, -1, 1, 1, 0, 1, -1, 2], [1, -1, 0, 1, -1, 1, 0, 2],
    [1, 0, -1, 1, -1, 0, 1, 2], [0, 1, -1, 1, 0, -1, 1, 2], [-1, 1, 0, 1, 1, -1, 0, 2],
    # <11.6>{-1-1.1}
    [-1, -1, 2, 6, 1, 1, -2, 1], [1, -2, 1, 6, -1, 2, -1, 1], [2, -1, -1, 6, -2, 1, 1, 1],
    [1, 1, -2, 6, -1, -1, 2, 1], [-1, 2, -1, 6, 1, -2, 1, 1], [-2, 1, 1, 6, 2, -1, -1, 1],
    # <10.-2>{10.1}: compression twins in Mg
    [1, 0, -1, -2, 1, 0, -1, 1], [0, 1, -1, -2, 0, 1, -1, 1], [-1, 1, 0, -2, -1, 1, 0, 1],
    [-1, 0, 1, -2, -1, 0, 1, 1], [0, -1, 1, -2, 0, -1, 1, 1], [1, -1, 0, -2, 1, -1, 0, 1],
    # <11.-3>{11.2}
    [1, 1, -2, -3, 1, 1, -2, 2], [-1, 2, -1, -3, -1, 2, -1, 2], [-2, 1, 1, -3, -2, 1, 1, 2],
    [-1, -1, 2, -3, -1, -1, 2, 2], [1, -2, 1, -3, 1, -2, 1, 2], [2, -1, -1, -3, 2, -1, -1, 2],
], dtype=float)

_HP_SLIPSLIP = """
 1 2 2 3 4 4 9 10 9 9 10 9 20 21 22 22 21 20 20 21 22 22 21 20 47 47 48 47 47 48
 2 1 2 4 3 4 10 9 9 10 9 9 22 22 21 20 20 21 22 22 21 20 20 21 47 48 47 47 48 47
 2 2 1 4 4 3 9 9 10 9 9 10 21 20 20 21 22 22 21 20 20 21 22 22 48 47 47 48 47 47
 7 8 8 5 6 6 11 12 11 11 12 11 23 24 25 25 24 23 23 24 25 25 24 23 49 49 50 49 49 50
 8 7 8 6 5 6 12 11 11 12 11 11 25 25 24 23 23 24 25 25 24 23 23 24 49 50 49 49 50 49
 8 8 7 6 6 5 11 11 12 11 11 12 24 23 23 24 25 25 24 23 23 24 25 25 50 49 49 50 49 49
 18 19 18 16 17 16 13 14 14 15 14 14 26 26 27 28 28 27 29 29 27 28 28 27 51 52 51 51 52 51
 19 18 18 17 16 16 14 13 14 14 15 14 28 27 26 26 27 28 28 27 29 29 27 28 51 51 52 51 51 52
 18 18 19 16 16 17 14 14 13 14 14 15 27 28 28 27 26 26 27 28 28 27 29 29 52 51 51 52 51 51
 18 19 18 16 17 16 15 14 14 13 14 14 29 29 27 28 28 27 26 26 27 28 28 27 51 52 51 51 52 51
 19 18 18 17 16 16 14 15 14 14 13 14 28 27 29 29 27 28 28 27 26 26 27 28 51 51 52 51 51 52
 18 18 19 16 16 17 14 14 15 14 14 13 27 28 28 27 29 29 27 28 28 27 26 26 52 51 51 52 51 51
 44 45 46 41 42 43 37 38 39 40 38 39 30 31 32 32 32 33 34 35 32 32 32 36 53 54 55 53 54 56
 46 45 44 43 42 41 37 39 38 40 39 38 31 30 36 32 32 32 35 34 33 32 32 32 56 54 53 55 54 53
 45 46 44 42 43 41 39 37 38 39 40 38 32 36 30 31 32 32 32 33 34 35 32 32 56 53 54 55 53 54
 45 44 46 42 41 43 38 37 39 38 40 39 32 32 31 30 36 32 32 32 35 34 33 32 53 56 54 53 55 54
 46 44 45 43 41 42 38 39 37 38 39 40 32 32 32 36 30 31 32 32 32 33 34 35 54 56 53 54 55 53
 44 46 45 41 43 42 39 38 37 39 38 40 33 32 32 32 31 30 36 32 32 32 35 34 54 53 56 54 53 55
 44 45 46 41 42 43 40 38 39 37 38 39 34 35 32 32 32 36 30 31 32 32 32 33 53 54 56 53 54 55
 46 45 44 43 42 41 40 39 38 37 39 38 35 34 33 32 32 32 31 30 36 32 32 32 55 54 53 56 54 53
 45 46 44 42 43 41 39 40 38 39 37 38 32 33 34 35 32 32 32 36 30 31 32 32 55 53 54 56 53 54
 45 44 46 42 41 43 38 40 39 38 37 39 32 32 35 34 33 32 32 32 31 30 36 32 53 55 54 53 56 54
 46 44 45 43 41 42 38 39 40 38 39 37 32 32 32 33 34 35 32 32 32 36 30 31 54 55 53 54 56 53
 44 46 45 41 43 42 39 38 40 39 38 37 36 32 32 32 35 34 33 32 32 32 31 30 54 53 55 54 53 56
 68 68 69 66 66 67 64 64 65 64 65 65 60 61 61 60 62 62 60 63 63 60 62 62 57 58 58 59 58 58
 68 69 68 66 67 66 65 64 64 65 64 64 62 62 60 61 61 60 62 62 60 63 63 60 58 57 58 58 59 58
 69 68 68 67 66 66 64 65 64 64 65 64 63 60 62 62 60 61 61 60 62 62 60 63 58 58 57 58 58 59
 68 68 69 66 66 67 64 64 65 64 64 65 60 63 63 60 62 62 60 61 61 60 62 62 59 58 58 57 58 58
 68 69 68 66 67 66 65 64 64 65 64 64 62 62 60 63 63 60 62 62 60 61 61 60 58 59 58 58 57 58
 69 68 68 67 66 66 64 65 64 64 65 64 61 60 62 62 60 63 63 60 62 62 60 61 58 58 59 58 58 57
"""


def _table(s: str) -> np.ndarray:
    return np.array([[int(v) for v in row.split()] for row in s.strip().splitlines()])


def _hp_twintwin() -> np.ndarray:
    # block structure of DAMASK's HP_INTERACTIONTWINTWIN (rows reacting, columns acting)
    blocks = [  # (diagonal, off-diagonal) for diagonal blocks; constants elsewhere
        [(1, 2), 3, 7, 13],
        [6, (4, 5), 8, 14],
        [12, 11, (9, 10), 15],
        [20, 19, 18, (16, 17)],
    ]
    T = np.zeros((24, 24), dtype=int)
    for r in range(4):
        for c in range(4):
            b = blocks[r][c]
            if isinstance(b, tuple):
                T[6 * r:6 * r + 6, 6 * c:6 * c + 6] = b[1]
                np.fill_diagonal(T[6 * r:6 * r + 6, 6 * c:6 * c + 6], b[0])
            else:
                T[6 * r:6 * r + 6, 6 * c:6 * c + 6] = b
    return T


def _hp_sliptwin() -> np.ndarray:
    # rows: slip (reacting, 30), columns: twin (acting, 24)
    T = np.zeros((30, 24), dtype=int)
    start = np.cumsum((0,) + HP_NSLIP)
    for f in range(5):
        for t in range(4):
            T[start[f]:start[f + 1], 6 * t:6 * t + 6] = 4 * f + t + 1
    return T


def _hp_twinslip() -> np.ndarray:
    # rows: twin (reacting, 24), columns: slip (acting, 30)
    T = np.zeros((24, 30), dtype=int)
    start = np.cumsum((0,) + HP_NSLIP)
    for t in range(4):
        for f in range(5):
            T[6 * t:6 * t + 6, start[f]:start[f + 1]] = 4 * f + t + 1
    return T


def _ci_sliptwin() -> np.ndarray:
    # rows: slip (reacting, 48), columns: twin (acting, 12); the {123} family is one type (4)
    return np.concatenate([_table(_CI_SLIPTWIN_110_112), np.full((24, 12), 4, dtype=int)])


def _cf_twintwin() -> np.ndarray:
    T = np.full((12, 12), 2, dtype=int)
    for k in range(4):
        T[3 * k:3 * k + 3, 3 * k:3 * k + 3] = 1
    return T


LATTICE_DATA = {
    "cF": dict(nslip=CF_NSLIP, ntwin=CF_NTWIN, slip=CF_SLIP, twin=CF_TWIN,
               slipslip=_table(_CF_SLIPSLIP), twintwin=_cf_twintwin(),
               sliptwin=_table(_CF_SLIPTWIN), twinslip=np.ones((12, 18), dtype=int)),
    # twinslip: DAMASK has a single twin-slip type for cF and cI (all entries 1)
    "cI": dict(nslip=CI_NSLIP, ntwin=CI_NTWIN, slip=CI_SLIP, twin=CI_TWIN,
               slipslip=_table(_CI_SLIPSLIP), twintwin=_table(_CI_TWINTWIN),
               sliptwin=_ci_sliptwin(), twinslip=np.ones((12, 48), dtype=int)),
    "hP": dict(nslip=HP_NSLIP, ntwin=HP_NTWIN, slip=HP_SLIP, twin=HP_TWIN,
               slipslip=_table(_HP_SLIPSLIP), twintwin=_hp_twintwin(),
               sliptwin=_hp_sliptwin(), twinslip=_hp_twinslip()),
}


def _check(lattice: str) -> dict:
    if lattice not in LATTICE_DATA:
        raise ValueError(f"unknown lattice {lattice!r}: use one of {sorted(LATTICE_DATA)}")
    return LATTICE_DATA[lattice]


def _active(N, Nmax, kind, lattice) -> np.ndarray:
    """Indices into the full system list of the active systems (first N of each family)."""
    N = [int(n) for n in N]
    if len(N) > len(Nmax):
        raise ValueError(f"{kind}: {len(N)} families given, {lattice} has {len(Nmax)}")
    if any(n < 0 for n in N) or any(n > m for n, m in zip(N, Nmax)):
        raise ValueError(f"{kind} = {N}: each family must have 0..{list(Nmax)} systems")
    start = np.cumsum((0,) + tuple(Nmax))
    return np.concatenate([start[f] + np.arange(n) for f, n in enumerate(N)] or [np.zeros(0, int)]).astype(int)


def _check_c_a(lattice: str, c_a: float | None) -> float:
    """c/a of an hP lattice, checked (in [1, 2]); 1.0 for cubic lattices, which have none."""
    if lattice != "hP":
        return 1.0
    if c_a is None or not 1.0 <= c_a <= 2.0:
        raise ValueError(f"hP needs c/a in [1, 2], got {c_a}")
    return float(c_a)


def coordinate_systems(N, lattice: str, c_a: float | None = None, kind: str = "slip") -> np.ndarray:
    """Unit direction d and plane normal n of the active systems in the crystal frame.

    N: systems per family; kind: 'slip' or 'twin'. Returns (n_sys, 2, 3): [:, 0] = d,
    [:, 1] = n. hP: [uvtw] -> [3u/2, (u+2v) sqrt(3)/2, w c/a], (hkil) -> [h, (h+2k)/sqrt(3), l/(c/a)].
    """
    data = _check(lattice)
    _check_c_a(lattice, c_a)
    Nmax = data["nslip" if kind == "slip" else "ntwin"]
    systems = data[kind][_active(N, Nmax, "N_sl" if kind == "slip" else "N_tw", lattice)]
    if lattice == "hP":
        d = np.stack([systems[:, 0] * 1.5, (systems[:, 0] + 2 * systems[:, 1]) * np.sqrt(0.75),
                      systems[:, 3] * c_a], axis=-1)
        n = np.stack([systems[:, 4], (systems[:, 4] + 2 * systems[:, 5]) / np.sqrt(3.0),
                      systems[:, 7] / c_a], axis=-1)
    else:
        d, n = systems[:, :3], systems[:, 3:6]
    d = d / np.linalg.norm(d, axis=-1, keepdims=True)
    n = n / np.linalg.norm(n, axis=-1, keepdims=True)
    return np.stack([d, n], axis=1)


def schmid_slip(N_sl, lattice: str, c_a: float | None = None) -> np.ndarray:
    """(n_sl, 3, 3) Schmid matrices d (x) n of the active slip systems (crystal frame)."""
    cs = coordinate_systems(N_sl, lattice, c_a, "slip")
    return np.einsum("si,sj->sij", cs[:, 0], cs[:, 1])


def schmid_twin(N_tw, lattice: str, c_a: float | None = None) -> np.ndarray:
    """(n_tw, 3, 3) Schmid matrices d (x) n of the active twin systems (crystal frame)."""
    cs = coordinate_systems(N_tw, lattice, c_a, "twin")
    return np.einsum("si,sj->sij", cs[:, 0], cs[:, 1])


def characteristic_shear_twin(N_tw, lattice: str, c_a: float | None = None) -> np.ndarray:
    """(n_tw,) characteristic twin shear (Christian & Mahajan 1995), as DAMASK."""
    data = _check(lattice)
    idx = _active(N_tw, data["ntwin"], "N_tw", lattice)
    if lattice in ("cF", "cI"):
        return np.full(len(idx), 0.5 * np.sqrt(2.0))
    c_a = _check_c_a(lattice, c_a)
    fam = np.repeat(np.arange(4), 6)[idx]
    shear = np.array([(3.0 - c_a ** 2) / np.sqrt(3.0) / c_a,
                      1.0 / c_a,
                      (4.0 * c_a ** 2 - 9.0) / np.sqrt(48.0) / c_a,
                      2.0 * (c_a ** 2 - 2.0) / 3.0 / c_a])
    return shear[fam]


def _build(types, idx_react, idx_act, values, name) -> np.ndarray:
    values = np.asarray(values, dtype=float).ravel()
    sub = types[np.ix_(idx_react, idx_act)]
    if sub.size and sub.max() > values.size:
        raise ValueError(f"{name}: needs at least {sub.max()} values for the active systems, got {values.size}")
    return values[sub - 1] if sub.size else np.zeros(sub.shape)


def interaction_slip_slip(N_sl, values, lattice: str) -> np.ndarray:
    """(n_sl, n_sl) h_sl-sl[reacting, acting] from DAMASK's per-type values."""
    data = _check(lattice)
    if data["slipslip"] is None:
        raise ValueError(f"slip-slip interaction for {lattice} is not implemented")
    i = _active(N_sl, data["nslip"], "N_sl", lattice)
    return _build(data["slipslip"], i, i, values, "h_sl-sl")


def interaction_twin_twin(N_tw, values, lattice: str) -> np.ndarray:
    """(n_tw, n_tw) h_tw-tw[reacting, acting]."""
    data = _check(lattice)
    i = _active(N_tw, data["ntwin"], "N_tw", lattice)
    return _build(data["twintwin"], i, i, values, "h_tw-tw")


def interaction_slip_twin(N_sl, N_tw, values, lattice: str) -> np.ndarray:
    """(n_sl, n_tw) h_sl-tw[slip reacting, twin acting]."""
    data = _check(lattice)
    if data["sliptwin"] is None:
        raise ValueError(f"slip-twin interaction for {lattice} is not implemented")
    i = _active(N_sl, data["nslip"], "N_sl", lattice)
    j = _active(N_tw, data["ntwin"], "N_tw", lattice)
    return _build(data["sliptwin"], i, j, values, "h_sl-tw")


def interaction_twin_slip(N_tw, N_sl, values, lattice: str) -> np.ndarray:
    """(n_tw, n_sl) h_tw-sl[twin reacting, slip acting]."""
    data = _check(lattice)
    i = _active(N_tw, data["ntwin"], "N_tw", lattice)
    j = _active(N_sl, data["nslip"], "N_sl", lattice)
    return _build(data["twinslip"], i, j, values, "h_tw-sl")
