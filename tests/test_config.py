"""params.yaml schema: validation names the bad key; variants resolve; profiles are valid."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dynpath.config import Config, ConfigError, load_config
from dynpath.profiles import VARIANT_NAMES, available, resolve, use_profile


def _write(tmp_path: Path, data: object) -> Path:
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def test_committed_params_is_the_synthetic_profile(repo_root: Path) -> None:
    committed = yaml.safe_load((repo_root / "params.yaml").read_text())
    assert committed == resolve("synthetic")


@pytest.mark.parametrize("name", ["synthetic", "tiny", "charades_sta", "tacos"])
def test_profiles_validate(name: str, tmp_path: Path) -> None:
    path = use_profile(name, tmp_path / "params.yaml")
    cfg = load_config(path)
    assert set(cfg.variants) == set(VARIANT_NAMES)
    assert name in available()


def test_paper_settings_in_real_profiles(tmp_path: Path) -> None:
    for name, backbone in (("charades_sta", "i3d"), ("tacos", "c3d")):
        cfg = load_config(use_profile(name, tmp_path / f"{name}.yaml"))
        assert (cfg.model.dim, cfg.model.heads, cfg.model.lstm_scales) == (512, 8, 3)
        assert cfg.model.kernels == (3, 5, 7, 9)
        assert (cfg.train.lr, cfg.train.epochs, cfg.vocab.max_query_len) == (5e-4, 50, 30)
        assert (cfg.train.lambda_bound, cfg.train.lambda_inner) == (1.0, 10.0)
        assert cfg.extract.backbone == backbone


def test_unknown_key_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"model\.dimm: unknown key"):
        load_config(_write(tmp_path, {"model": {"dimm": 3}}))


def test_mistyped_value_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"train\.epochs"):
        load_config(_write(tmp_path, {"train": {"epochs": "many"}}))


def test_even_kernel_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"model\.kernels"):
        load_config(_write(tmp_path, {"model": {"kernels": [3, 4]}}))


def test_bad_yaml_names_file(tmp_path: Path) -> None:
    p = tmp_path / "params.yaml"
    p.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(p)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_yaml_is_loaded_safely(tmp_path: Path) -> None:
    p = tmp_path / "params.yaml"
    p.write_text("seed: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError):
        load_config(p)


def test_variant_overrides_and_arch() -> None:
    cfg = Config(
        variants={"dynamic": {}, "tau05": {"arch": "dynamic", "model.gumbel_tau": 0.5}},
    )
    arch, vcfg = cfg.variant("tau05")
    assert arch == "dynamic" and vcfg.model.gumbel_tau == 0.5
    assert cfg.model.gumbel_tau == 1.0  # base untouched
    with pytest.raises(ConfigError, match="unknown variant"):
        cfg.variant("nope")
    bad = Config(variants={"x": {"model.nope": 1}})
    with pytest.raises(ConfigError, match=r"variants\.x\.model\.nope"):
        bad.variant("x")
    worse = Config(variants={"x": {"model.dim": -1}})
    with pytest.raises(ConfigError, match=r"variants\.x"):
        worse.variant("x")


def test_overrides_on_load(tmp_path: Path) -> None:
    p = _write(tmp_path, {"seed": 1})
    cfg = load_config(p, overrides={"train.epochs": 3})
    assert cfg.train.epochs == 3 and cfg.seed == 1
    with pytest.raises(ConfigError, match="no such config key"):
        load_config(p, overrides={"train.nope": 3})


def test_nested_variant_overrides_touch_one_key() -> None:
    # `dvc exp run -S variants.x.model.dropout=0.1` writes a nested mapping
    cfg = Config(variants={"x": {"arch": "dynamic", "model": {"dropout": 0.1}}})
    arch, vcfg = cfg.variant("x")
    assert arch == "dynamic" and vcfg.model.dropout == 0.1
    assert vcfg.model.dim == cfg.model.dim and vcfg.model.kernels == cfg.model.kernels


def test_seeds_default_to_seed_and_are_validated(tmp_path: Path) -> None:
    assert Config().seeds == (Config().seed,)
    assert load_config(_write(tmp_path, {"seed": 3})).seeds == (3,)  # an old params file
    # an override of `seed` moves the default training seed with it, an explicit list stays
    assert load_config(_write(tmp_path, {"seed": 3}), {"seed": 4}).seeds == (4,)
    assert load_config(_write(tmp_path, {"seed": 3, "seeds": [1, 2]}), {"seed": 4}).seeds == (1, 2)
    assert load_config(_write(tmp_path, {"seeds": [9, 1]})).seeds == (9, 1)  # order kept
    with pytest.raises(ConfigError, match=r"params\.yaml: seeds: .*at least one"):
        load_config(_write(tmp_path, {"seeds": []}))
    with pytest.raises(ConfigError, match=r"seeds: .*unique; repeated: \[1\]"):
        load_config(_write(tmp_path, {"seeds": [1, 2, 1]}))
    with pytest.raises(ConfigError, match=r"seeds: .*>= 0"):
        load_config(_write(tmp_path, {"seeds": [-1]}))
    # a variant's resolved config keeps the seeds
    assert Config(seeds=(5, 6), variants={"dynamic": {}}).variant("dynamic")[1].seeds == (5, 6)
