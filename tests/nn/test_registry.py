import pytest

from modyolo.registry import Registry, RegistryError


def test_register_get_and_aliases():
    reg = Registry("module")

    @reg.register(aliases=("nn.Thing",))
    class Thing:
        pass

    assert reg.get("Thing") is Thing
    assert reg.get("nn.Thing") is Thing
    assert reg.canonical("nn.Thing") == "Thing"
    assert reg.names() == ["Thing"]
    assert "nn.Thing" in reg and len(reg) == 1


def test_duplicate_name_raises():
    reg = Registry("module")
    reg.add("A", object())
    with pytest.raises(RegistryError, match="already registered"):
        reg.add("A", object())
    with pytest.raises(RegistryError, match="already registered"):
        reg.add("B", object(), aliases=("A",))


def test_unknown_name_suggests_near_names():
    reg = Registry("module")
    reg.add("InvertedResidual", object())
    reg.add("Conv", object())
    with pytest.raises(RegistryError) as e:
        reg.get("InvertedResidul")
    assert "did you mean 'InvertedResidual'" in str(e.value)


def test_non_string_name_is_refused():
    with pytest.raises(RegistryError, match="must be a string"):
        Registry("module").get(3)
