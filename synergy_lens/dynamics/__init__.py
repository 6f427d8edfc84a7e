"""Task difficulty and dynamics: graded task suite, order parameters of head organisation."""

from synergy_lens.dynamics.embedding import (
    fill_nan_columns,
    functional_embedding,
    pca,
    phiid_features,
    profile_features,
)
from synergy_lens.dynamics.flow import FLOW_METRICS, ResidualFlow, residual_flow
from synergy_lens.dynamics.order import (
    TransitionPoint,
    bimodality,
    bootstrap_ci,
    cluster_separation,
    inverted_u_index,
    transition_point,
    two_means,
)
from synergy_lens.dynamics.study import DifficultyStudy, difficulty_study
from synergy_lens.dynamics.study_level import ORDER_PARAMETERS, order_parameters
from synergy_lens.record.tasks import (
    FAMILIES,
    Task,
    accuracy_table,
    generate_tasks,
    register_family,
    score_answer,
    task_suite,
)

__all__ = [
    "FLOW_METRICS",
    "ORDER_PARAMETERS",
    "DifficultyStudy",
    "ResidualFlow",
    "difficulty_study",
    "fill_nan_columns",
    "functional_embedding",
    "order_parameters",
    "pca",
    "phiid_features",
    "profile_features",
    "residual_flow",
    "FAMILIES",
    "Task",
    "TransitionPoint",
    "accuracy_table",
    "bimodality",
    "bootstrap_ci",
    "cluster_separation",
    "generate_tasks",
    "inverted_u_index",
    "register_family",
    "score_answer",
    "task_suite",
    "transition_point",
    "two_means",
]
