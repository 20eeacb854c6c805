"""The client (efsml_client/) stays out of the Lambda package: chalice bundles app.py and chalicelib/ only."""

import zipfile


def test_the_deployment_package_has_no_client(packaged_stack):
    names = zipfile.ZipFile(packaged_stack / "deployment.zip").namelist()
    assert "app.py" in names and any(n.startswith("chalicelib/") for n in names)
    assert not [n for n in names if n.startswith("efsml_client/")]
