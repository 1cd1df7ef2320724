"""Static checks of the Dockerfiles, and the scripts running from the image's file layout."""
import os
import re
import shutil

import pytest

from conftest import REPO, RUN_ID, run_script

IMAGES = {"process-fov": "process_fov.py", "merge-results": "merge_results.py"}
# Files an image carries besides its scripts: the bundled default recipe, at the path
# infra/recipe.ts (BUNDLED_RECIPE) and containers/README.md document.
EXTRA_COPIES = {"process-fov": {"/opt/starfish-chatops/recipes/iss_starfish.py": "examples/recipes/iss_starfish.py"},
                "merge-results": {}}


def parse_dockerfile(path):
    text = open(path).read()
    lines = [ln.strip() for ln in text.replace("\\\n", " ").splitlines()
             if ln.strip() and not ln.strip().startswith("#")]
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1] if " " in ln else "") for ln in lines]


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_dockerfile(image):
    script = IMAGES[image]
    instrs = parse_dockerfile(os.path.join(REPO, "containers", image, "Dockerfile"))
    froms = [a for i, a in instrs if i == "FROM"]
    # pinned to one starfish release (never :latest): 0.4.0, Python 3.10 (0.2.2's Python 3.6 is end of life)
    assert froms == ["spacetx/starfish:0.4.0"]
    users = [a for i, a in instrs if i == "USER"]
    assert users and users[-1] not in ("root", "0", "0:0")
    assert not [a for i, a in instrs if i == "RUN"]  # no build tools, nothing installed
    copies = [a.split() for i, a in instrs if i == "COPY"]
    dests = {}
    for src, dst in copies:
        assert os.path.exists(os.path.join(REPO, src)), src  # build context = repo root
        dests[dst] = src
    assert dests["/opt/starfish-chatops/common/starfish_io.py"] == "containers/common/starfish_io.py"
    entry = [a for i, a in instrs if i == "ENTRYPOINT"][-1]
    target = re.findall(r'"(/opt/[^"]+)"', entry)[0]
    assert dests[target] == "containers/%s/%s" % (image, script)
    for dst, src in EXTRA_COPIES[image].items():
        assert dests.get(dst) == src, dst
    ignore = open(os.path.join(REPO, "containers", image, "Dockerfile.dockerignore")).read().split()
    for src in dests.values():
        assert "!" + src in ignore


def test_scripts_run_from_the_image_layout(tmp_path, synthetic):
    """/opt/starfish-chatops/{common,process-fov,merge-results}: the scripts find ../common."""
    opt = tmp_path / "opt" / "starfish-chatops"
    common = sorted(f for f in os.listdir(os.path.join(REPO, "containers", "common")) if f.endswith(".py"))
    for d, files in (("common", common), ("process-fov", ["process_fov.py"]),
                     ("merge-results", ["merge_results.py"])):
        os.makedirs(str(opt / d))
        for f in files:
            shutil.copy(os.path.join(REPO, "containers", d, f), str(opt / d / f))
    recipe = tmp_path / "r.py"
    recipe.write_text("def process_fov(fov_index, experiment_url):\n"
                      "    return [{'x': 1, 'y': 2, 'target': 'ACTB'}]\n")
    out, results = str(tmp_path / "fovs"), str(tmp_path / "results")
    r = run_script(str(opt / "process-fov" / "process_fov.py"), STARFISH_RUN_ID=RUN_ID,
                   STARFISH_EXPERIMENT=synthetic, STARFISH_RECIPE=str(recipe), STARFISH_FOVS="0",
                   STARFISH_FOV_OUTPUT=out)
    assert r.code == 0, r
    r = run_script(str(opt / "merge-results" / "merge_results.py"), STARFISH_RUN_ID=RUN_ID,
                   STARFISH_FOVS="0", STARFISH_FOV_OUTPUT=out, STARFISH_RESULTS_OUTPUT=results)
    assert r.code == 0, r
    assert open(os.path.join(results, "spots.csv")).read() == \
        "fov,x,y,z,target,quality\n0,1.00,2.00,0,ACTB,1.000\n"


def _signature_of(path, name):
    """A stand-in function with the signature ``name`` has in ``path`` (annotations as names), so
    the convention process-fov would pick is checked without importing starfish."""
    import ast
    tree = ast.parse(open(path).read())
    fn = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name][0]
    params = ", ".join("%s: %r" % (a.arg, ast.get_source_segment(open(path).read(), a.annotation))
                       if a.annotation is not None else a.arg for a in fn.args.args)
    namespace = {}
    exec("def %s(%s):\n    pass\n" % (name, params), namespace)
    return namespace[name]


def test_the_starfish_example_recipe_is_called_as_starfish_s_tutorial_recipe():
    import process_fov as pf
    recipe = os.path.join(REPO, "examples", "recipes", "iss_starfish.py")
    assert pf.recipe_convention(_signature_of(recipe, "process_fov"), recipe) == pf.FOV_CONVENTION
    assert pf.recipe_convention(_signature_of(recipe, "process_fov_by_index"), recipe) == pf.INDEX_CONVENTION
