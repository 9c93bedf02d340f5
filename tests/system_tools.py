"""Debian tools some tests need (prometheus, promtool, ...), installed by install.sh. Where one
is missing a test skips, saying the exact command, except in CI (CI=true), where it fails:
a test never skips silently in CI."""

from __future__ import annotations

import os
import shutil

import pytest

# tool -> the Debian package that has it
PACKAGES = {"prometheus": "prometheus", "promtool": "prometheus",
            "ansible-playbook": "ansible", "ansible-lint": "ansible-lint",
            "procServ": "procserv", "java": "openjdk-17-jre-headless",
            "chromium": "chromium", "chromedriver": "chromium-driver",
            "systemd-analyze": "systemd", "javac": "openjdk-17-jdk-headless"}


def require(tool: str) -> str:
    path = shutil.which(tool)
    if path is not None:
        return path
    message = (f"{tool} is not installed: ./install.sh installs it as root, or run "
               f"`sudo apt-get install -y {PACKAGES.get(tool, tool)}`")
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def headless_chromium():
    """A selenium driver of Debian's chromium, headless, through its chromedriver."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = require("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,900"):
        options.add_argument(arg)
    return webdriver.Chrome(options=options, service=Service(require("chromedriver")))
