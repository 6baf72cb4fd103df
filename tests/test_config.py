import pytest

from selfimprove.config import ConfigError, dump_toml, load_config, presets, validate


@pytest.mark.parametrize("name", presets())
def test_every_shipped_preset_loads_and_round_trips(name):
    import tomllib

    cfg = load_config(name)
    assert validate(tomllib.loads(dump_toml(cfg))) == cfg


def test_quick_is_the_default():
    assert "quick" in presets() and "paper-reverse-add" in presets()
    assert load_config().name == "quick"


def test_set_overrides_nested_values_with_toml_types():
    cfg = load_config("quick", ["train.lr=5e-4", "loop.rounds=3", "task.name=copy", "loop.filters=['none']"])
    assert cfg.train.lr == 5e-4 and cfg.loop.rounds == 3 and cfg.task.name == "copy"
    assert cfg.loop.filters == ["none"]


@pytest.mark.parametrize(
    "override, words",
    [
        ("train.lrr=1", ["train.lrr", "train.lr"]),
        ("trian.lr=1", ["trian", "sections"]),
        ("train.lr=-1", ["train.lr", "-1", "greater than 0"]),
        ("task.name=nope", ["task.name", "nope", "reverse_add"]),
        ("model.d_model=130", ["d_model", "multiple of n_head"]),
        ("loop.filters=['vote']", ["loop.filters", "vote", "length"]),
        ("lr", ["key=value"]),
    ],
)
def test_bad_values_name_the_key_the_value_and_what_is_allowed(override, words):
    with pytest.raises(ConfigError) as e:
        load_config("quick", [override])
    for w in words:
        assert w in str(e.value)


def test_unknown_key_in_a_file(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[train]\nlearning_rate = 0.1\n')
    with pytest.raises(ConfigError, match="unknown config key 'train.learning_rate'"):
        load_config(str(path))


def test_missing_file_and_bad_toml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(str(tmp_path / "nope.toml"))
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(str(bad))
    with pytest.raises(ConfigError, match="neither a TOML file nor a preset"):
        load_config("no-such-preset")
