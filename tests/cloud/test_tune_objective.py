"""The figure a tuning job ranks a training job by is the accuracy of the model the job saved.

SageMaker reads each metric with its regex over the job's log and ranks a training job by the
*latest* value of the objective metric (``FinalHyperParameterTuningJobObjectiveMetric``). The job
saves its best epoch, so a job whose last epoch was worse than its best must still end its log
with the saved model's accuracy. The log here is what the trainer prints for a history seen on a
real digits job (``early_stopping``, min 3 epochs, patience 1): 0.117, 0.797, 0.978, 0.850, then
stopped, the 0.978 model saved.
"""

from __future__ import annotations

import re

from cloud.cli import main
from tests.cloud.test_tune import dry_run_request, manifest_tune_args
from train.metric_lines import epoch_lines, saved_model_line

HISTORY = (0.117, 0.797, 0.978, 0.850)
SAVED_EPOCH = 2  # 0-based, the best


def metric_values(log: str, definitions: list[dict[str, str]], metric: str) -> list[float]:
    """Every value of ``metric`` its regex finds in the log, in order (the tuner ranks a job by
    the last one)."""
    regex = re.compile(next(d["Regex"] for d in definitions if d["Name"] == metric))
    return [float(m.group(1)) for line in log.splitlines() if (m := regex.search(line))]


def job_log() -> str:
    """The job's log, with SageMaker's line prefix, as the trainer writes it for ``HISTORY``."""
    lines, best = [], -1.0
    for epoch, accuracy in enumerate(HISTORY):
        train = {"accuracy": 0.9, "loss": 0.3, "samples_per_sec": 400.0, "time": 1.5}
        lines += epoch_lines(epoch, train, {"accuracy": accuracy, "loss": 0.4}, top_k=None)
        if accuracy > best:
            best = accuracy
            lines.append(f"Storing the best model with validation accuracy: {accuracy:f}")
    lines.append("Early stopping: no improvement in the last 1 epochs")
    lines.append(f"Final model: validation accuracy {HISTORY[SAVED_EPOCH]:f} (epoch 3)")
    lines.append(saved_model_line(SAVED_EPOCH, HISTORY[SAVED_EPOCH]))
    return "\n".join(
        f"[12/04/2026 17:31:0{i % 10} INFO 1401] {line}" for i, line in enumerate(lines)
    )


def test_the_tuner_ranks_a_job_by_its_saved_model_not_its_last_epoch(
    session, recorder, tmp_path, capsys
) -> None:
    assert main(manifest_tune_args(tmp_path, 600), session=session) == 0
    request = dry_run_request(capsys.readouterr().out)
    definitions = request["TrainingJobDefinition"]["AlgorithmSpecification"]["MetricDefinitions"]
    objective = request["HyperParameterTuningJobConfig"]["HyperParameterTuningJobObjective"]
    assert objective == {"Type": "Maximize", "MetricName": "validation:accuracy"}
    values = metric_values(job_log(), definitions, "validation:accuracy")
    assert values[-1] == HISTORY[SAVED_EPOCH]  # what the tuner ranks the job by
    assert values[:-1] == list(HISTORY)  # the built-in's per-epoch lines, each epoch's figure
