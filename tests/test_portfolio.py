"""--searcher portfolio: configurations that searched best on other data sets, tried first."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import builtin_card
from visiontune.errors import ConfigError
from visiontune.search import SearchOptions, check_options
from visiontune.search import portfolio
from visiontune.search.portfolio import load_entries, portfolio_entry, portfolio_points
from visiontune.search_spaces import check_point_in_space, conditioned, resolve_space

CNN = {"model": "cnn", "activation": "relu", "blocks": 2, "width": 16, "pool_first": False, "batchnorm": True,
       "dropout": 0.1, "regularizer": "none", "optimizer": "adam", "lr": 0.002, "lr_schedule": "cosine",
       "batch_size": 64, "augment": "none"}
FNN = {"model": "fnn", "activation": "relu", "hidden": 512, "dropout": 0.2, "regularizer": "none",
       "optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "lr_schedule": "constant", "batch_size": 32, "augment": "none"}
UNET = {"model": "unet", "depth": 3, "width": 16, "batchnorm": True, "dropout": 0.0, "optimizer": "adam",
        "lr": 0.001, "lr_schedule": "constant", "batch_size": 8, "loss": "dice", "augment": "flip"}


def entry(task: str, kind: str, val: float, config: dict) -> dict:
    return portfolio_entry(task, kind, {**config, "task": task, "epochs": 5, "precision": "fp32"}, val, "test")


ENTRIES = [
    entry("mnist", "classification", 0.99, {**CNN, "width": 32}),  # the measured task's own: never used
    entry("textures", "classification", 0.85, CNN),
    entry("textures", "classification", 0.84, {**CNN, "blocks": 3}),
    entry("cells", "classification", 0.70, FNN),
    entry("warwick", "segmentation", 0.88, {**UNET, "depth": 4}),  # another kind: never used for mnist
    entry("texture-seg", "segmentation", 0.70, UNET),
]


def mnist_space(fixed_settings: dict | None = None):
    card = builtin_card("mnist")
    space = conditioned(resolve_space(card, "mnist"), fixed_settings or {})
    return card, space, {"task": "mnist", "epochs": 5, **(fixed_settings or {})}


def test_a_data_sets_portfolio_holds_other_data_sets_of_its_kind_each_ones_best_first():
    card, space, fixed = mnist_space()
    points = portfolio_points(card, space, fixed, entries=ENTRIES)
    # leave-one-task-out: mnist's own winner is not there; nor is the segmentation entry; the
    # run-time settings (task, epochs, precision) were never stored; each source's best comes
    # before any source's second
    assert points == [CNN, FNN, {**CNN, "blocks": 3}]
    assert portfolio_points(card, space, fixed, entries=ENTRIES, limit=2) == [CNN, FNN]
    assert portfolio_points(builtin_card("warwick"), resolve_space(builtin_card("warwick"), "warwick"),
                            {"task": "warwick", "epochs": 5}, entries=ENTRIES) == [UNET]


def test_entries_the_space_cannot_produce_are_left_out():
    # --set model=cnn: the FNN cannot be produced; the fixed setting itself is not repeated
    card, space, fixed = mnist_space({"model": "cnn"})
    without_model = {key: value for key, value in CNN.items() if key != "model"}
    assert portfolio_points(card, space, fixed, entries=ENTRIES) == [without_model, {**without_model, "blocks": 3}]
    # a value outside the fitted space's range (a width it does not offer) is left out too
    odd = [entry("textures", "classification", 0.9, {**CNN, "width": 48})]
    assert portfolio_points(card, space, fixed, entries=odd) == []


def test_portfolio_searcher_proposes_warm_start_then_portfolio_then_tpe(tmp_path, monkeypatch, ray_address):
    from visiontune.search.tuner import make_searcher

    shipped = tmp_path / "portfolio.json"
    shipped.write_text(json.dumps({"visiontune_portfolio": 1, "entries": ENTRIES}))
    monkeypatch.setattr(portfolio, "PORTFOLIO_FILE", shipped)
    warm = tmp_path / "warm.json"
    report_like = {**CNN, "width": 8, "lr": 0.001}
    warm.write_text(json.dumps([report_like]))
    options = SearchOptions(task="mnist", space="mnist", trials=8, searcher="portfolio", warm_start=str(warm),
                            name="p")
    plan = check_options(options, builtin_card("mnist"))
    assert plan.points == [report_like] and plan.portfolio == [CNN, FNN, {**CNN, "blocks": 3}]
    searcher = make_searcher(options, plan)
    proposed = [searcher.suggest(f"t{index}") for index in range(6)]
    settings = [{key: config[key] for key in point} for config, point in zip(proposed, [report_like, *plan.portfolio])]
    assert settings == [report_like, *plan.portfolio]
    assert all(config["task"] == "mnist" and config["epochs"] == 10 for config in proposed)
    # after them, TPE's own proposals: new configurations
    assert all({k: c[k] for k in CNN if k in c} not in (CNN, report_like) for c in proposed[4:])
    # the portfolio is the default; tpe and random propose none
    assert check_options(SearchOptions(task="mnist", space="mnist", trials=8, name="d"),
                         builtin_card("mnist")).portfolio == plan.portfolio
    for searcher in ("tpe", "random"):
        assert check_options(SearchOptions(task="mnist", space="mnist", trials=8, name="t", searcher=searcher),
                             builtin_card("mnist")).portfolio == []


def test_malformed_portfolio_file_is_one_line_naming_it(tmp_path):
    for text in ("{", json.dumps({"visiontune_portfolio": 1, "entries": [{"task": "x"}]}),
                 json.dumps({"visiontune_portfolio": 9, "entries": []})):
        path = tmp_path / "portfolio.json"
        path.write_text(text)
        with pytest.raises(ConfigError, match=r"portfolio\.json: unreadable portfolio") as error:
            load_entries(path)
        assert "\n" not in str(error.value)


def test_shipped_portfolio_entries_fit_the_spaces_of_their_own_tasks():
    """Each entry is a configuration its own search produced: it fits that task's space (the
    built-in tasks here); every kind has entries from at least two data sets, so every data
    set, the benchmark's own included, gets a leave-one-task-out portfolio."""
    entries = load_entries()
    for kind in ("classification", "segmentation"):
        assert len({e["task"] for e in entries if e["kind"] == kind}) >= 2
    for item in entries:
        assert not set(item["config"]) & set(portfolio.RUN_SETTINGS)
        if item["task"] in ("mnist", "warwick"):
            card = builtin_card(item["task"])
            check_point_in_space(resolve_space(card, None), item["config"], {"task": item["task"], "epochs": 5})
    assert Path(portfolio.PORTFOLIO_FILE).name == "portfolio.json"


def test_the_default_search_runs_its_portfolio_after_the_warm_starts(ray_address, tmp_path, monkeypatch):
    """The default searcher is the portfolio: after the warm starts, the portfolio's
    configurations are the search's first trials, recorded in search.json; then TPE proposes."""
    import pandas as pd

    from visiontune.search import run_search

    shipped = tmp_path / "portfolio.json"
    other = {**CNN, "lr": 0.0005, "lr_schedule": "constant"}
    shipped.write_text(json.dumps({"visiontune_portfolio": 1,
                                   "entries": [entry("textures", "classification", 0.9, other)]}))
    monkeypatch.setattr(portfolio, "PORTFOLIO_FILE", shipped)
    warm = tmp_path / "warm.json"
    warm.write_text(json.dumps([CNN]))
    lines: list[str] = []
    run_search(SearchOptions(task="mnist", synthetic=True, space="mnist", trials=4,
                             warm_start=str(warm), max_epochs=2, concurrency=1, storage=str(tmp_path / "runs"),
                             name="p", report=False), progress=lines.append)
    run = tmp_path / "runs" / "p"
    recorded = json.loads((run / "search.json").read_text())
    assert recorded["options"]["searcher"] == "portfolio" and recorded["portfolio"] == [other]
    assert "portfolio: 1 configuration that searched best on other data sets goes first (listed in search.json)" \
        in lines
    table = pd.read_csv(run / "trials.csv")
    # each tried once (the order of proposals is checked above, on the searcher itself: Ray's
    # timestamps are whole seconds and cannot order trials that start together)
    assert len(table) == 4 and sorted(table["lr"]).count(CNN["lr"]) == 1 and list(table["lr"]).count(other["lr"]) == 1
