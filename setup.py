"""Installs `opensora_nb` from the fields of settings.ini (the nbdev 2 layout).

torch is asked for as a range only (`torch>=2.4`): with the local CPU wheel already installed
(`pip install torch==2.13.0`, or `-c constraints.txt`) pip installs nothing more, so a CPU machine never
pulls a second, CUDA torch. colossalai is not listed: its published pins would downgrade torch,
transformers and diffusers; the `dist` extra brings what its imports need and the README installs
colossalai itself with `--no-deps`.
"""
from configparser import ConfigParser
from pathlib import Path

import setuptools

cfg = ConfigParser(delimiters=["="])
cfg.read(Path(__file__).parent / "settings.ini")
cfg = cfg["DEFAULT"]

licenses = {"apache2": ("Apache Software License 2.0", "OSI Approved :: Apache Software License")}
statuses = ["1 - Planning", "2 - Pre-Alpha", "3 - Alpha", "4 - Beta", "5 - Production/Stable", "6 - Mature", "7 - Inactive"]
py_versions = "3.10 3.11 3.12".split()


def reqs(key):
    return cfg.get(key, "").split()


lic = licenses[cfg["license"]]
min_python = cfg["min_python"]
extras = {name: reqs(f"{name}_requirements") for name in ("app", "curation", "dev", "dist", "docs")}
extras["all"] = sorted({r for v in extras.values() for r in v})

setuptools.setup(
    name=cfg["repo"],
    license=lic[0],
    classifiers=[
        "Development Status :: " + statuses[int(cfg["status"])],
        "Intended Audience :: " + cfg["audience"].title(),
        "License :: " + lic[1],
        "Natural Language :: " + cfg["language"].title(),
    ]
    + [f"Programming Language :: Python :: {o}" for o in py_versions[py_versions.index(min_python):]],
    url=cfg["git_url"],
    packages=setuptools.find_packages(include=["opensora_nb", "opensora_nb.*"]),
    include_package_data=True,
    install_requires=reqs("requirements"),
    extras_require=extras,
    python_requires=">=" + min_python,
    long_description=open("README.md", encoding="utf-8").read() if Path("README.md").exists() else "",
    long_description_content_type="text/markdown",
    zip_safe=False,
    entry_points={
        "console_scripts": cfg["console_scripts"].split(),
        "nbdev": [f'{cfg["lib_path"]}={cfg["lib_path"]}._modidx:d'],
    },
    version=cfg["version"],
    author=cfg["author"],
    author_email=cfg["author_email"],
    description=cfg["description"],
    keywords=cfg["keywords"],
)
