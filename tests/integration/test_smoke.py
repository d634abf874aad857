from seqdeploy.manifest import Bundle


def test_export_tiny_fixture_produces_a_bundle(export_tiny):
    path = export_tiny()
    b = Bundle.load(path)
    assert b.specs["sequence"].input_names == ("input", "h0", "c0")
    assert b.manifest["self_check"]["passed"] is True
