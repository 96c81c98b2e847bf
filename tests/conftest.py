import pytest

pytest_plugins = ["pytester"]


@pytest.fixture(scope="session")
def cpu():
    from backends.cpu import create

    return create()
