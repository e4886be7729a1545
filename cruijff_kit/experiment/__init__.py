"""The experiment model: experiment_summary.yaml -> validated, typed `Experiment`."""
from cruijff_kit.experiment.model import Cell, Controls, Experiment, Run  # noqa: F401
