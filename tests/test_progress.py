"""The progress callback's account of which trials a run left unfinished (what decides exit 130)."""
from types import SimpleNamespace

from visiontune.search.progress import ProgressPrinter


def _trial(trial_id: str, status: str, epoch: int = 1):
    return SimpleNamespace(trial_id=trial_id, status=status, last_result={"epoch": epoch, "val/acc": 0.9})


def _printer() -> ProgressPrinter:
    return ProgressPrinter("val/acc", total_trials=3, max_epochs=4, emit=lambda line: None)


def test_trials_terminated_by_the_clean_up_after_ctrl_c_count_as_unfinished():
    # Tune's clean-up after Ctrl-C sets running trials TERMINATED without on_trial_complete:
    # with no pending trial left, status alone would make an interrupted search look complete.
    printer = _printer()
    finished, interrupted = _trial("a", "RUNNING", epoch=4), _trial("b", "RUNNING", epoch=2)
    for trial in (finished, interrupted):
        printer.on_trial_start(0, [], trial)
    finished.status = "TERMINATED"
    printer.on_trial_complete(0, [], finished)
    interrupted.status = "TERMINATED"  # the clean-up, no callback
    printer.on_experiment_end([finished, interrupted, _trial("c", "PENDING", epoch=0)])
    assert printer.unfinished == ["b", "c"]


def test_a_complete_run_and_trials_restored_as_finished_leave_nothing_unfinished():
    printer = _printer()
    restored = _trial("old", "TERMINATED", epoch=4)  # finished before a resume: no callbacks this run
    failed, done = _trial("f", "RUNNING"), _trial("d", "RUNNING", epoch=4)
    for trial in (failed, done):
        printer.on_trial_start(0, [], trial)
    failed.status = "ERROR"
    failed.get_pickled_error = lambda: RuntimeError("boom")
    printer.on_trial_error(0, [], failed)
    done.status = "TERMINATED"
    printer.on_trial_complete(0, [], done)
    printer.on_experiment_end([restored, failed, done])
    assert printer.unfinished == []
