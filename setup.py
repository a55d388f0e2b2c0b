"""Build step the declarative pyproject.toml cannot express: compile the gettext catalogs.

The compiled ``.mo`` files are not kept in git (``make`` compiles them for a checkout); a built
wheel must carry them, so ``build_py`` compiles every ``.po`` of the package into the build.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildPyWithCatalogs(build_py):
    def run(self) -> None:
        super().run()
        from babel.messages.mofile import write_mo
        from babel.messages.pofile import read_po

        for po in sorted(Path(self.build_lib, "qol_app", "translations").glob("*/LC_MESSAGES/*.po")):
            with po.open("rb") as handle:
                catalog = read_po(handle, locale=po.parts[-3])
            with po.with_suffix(".mo").open("wb") as handle:
                write_mo(handle, catalog)  # fuzzy entries left out, as `pybabel compile` does


setup(cmdclass={"build_py": BuildPyWithCatalogs})
