"""Task difficulty and dynamics: graded task suite, order parameters of head organisation."""

from synergy_lens.dynamics.order import (
    TransitionPoint,
    bimodality,
    bootstrap_ci,
    cluster_separation,
    inverted_u_index,
    transition_point,
    two_means,
)
from synergy_lens.dynamics.tasks import (
    FAMILIES,
    Task,
    accuracy_table,
    generate_tasks,
    register_family,
    score_answer,
    task_suite,
)

__all__ = [
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
