"""Geometry of representations (arXiv 2605.21692, "Representation Gap"): manifolds of known dimension, the gap of
a predictor's output set to the data manifold and its point-process law, memorising and G-equivariant predictors,
and intrinsic-dimension estimators (TWO-NN, MLE; scikit-dimension) behind one function."""

from mechlab.geometry.dimension import ESTIMATORS, intrinsic_dimension
from mechlab.geometry.gap import Gap, gap, loglog_slope, nearest_distances, point_process_gap, unit_ball_volume
from mechlab.geometry.manifolds import MANIFOLDS, Manifold, manifold, random_embedding, sphere_volume
from mechlab.geometry.predictors import ACTIONS, EquivariantMemoriser, GroupAction, Memoriser, group_action

__all__ = ["ACTIONS", "ESTIMATORS", "MANIFOLDS", "EquivariantMemoriser", "Gap", "GroupAction", "Manifold", "Memoriser",
           "gap", "group_action", "intrinsic_dimension", "loglog_slope", "manifold", "nearest_distances",
           "point_process_gap", "random_embedding", "sphere_volume", "unit_ball_volume"]
