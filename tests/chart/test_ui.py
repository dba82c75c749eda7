"""ui.templates: branded pages as a ConfigMap mounted at /etc/orchestrator/templates, with
config.ui.templatesDir pointing there."""

from conftest import FULLNAME, render, render_ci, render_error, validate_kubernetes


def test_templates_become_a_mounted_configmap_and_the_config_points_at_it():
    r = render_ci("ui-templates")
    validate_kubernetes(r)
    cm = r.get("ConfigMap", f"{FULLNAME}-templates")
    assert sorted(cm["data"]) == ["login.html", "style.css"]
    assert cm["data"]["login.html"].startswith('{% extends "base.html" %}')
    assert r.config()["ui"] == {"templatesDir": "/etc/orchestrator/templates"}
    mount = next(m for m in r.container()["volumeMounts"] if m["name"] == "ui-templates")
    assert mount == {"name": "ui-templates", "mountPath": "/etc/orchestrator/templates", "readOnly": True}
    volume = next(v for v in r.statefulset()["spec"]["template"]["spec"]["volumes"] if v["name"] == "ui-templates")
    # A whole-directory ConfigMap volume (no subPath), so edits reach the pod and hot reload.
    assert volume == {"name": "ui-templates", "configMap": {"name": f"{FULLNAME}-templates"}}


def test_no_templates_no_configmap_and_built_in_pages():
    r = render()
    assert all(cm["metadata"]["name"] != f"{FULLNAME}-templates" for cm in r.all("ConfigMap"))
    assert "ui" not in r.config()
    assert all(v["name"] != "ui-templates" for v in r.statefulset()["spec"]["template"]["spec"]["volumes"])


def test_an_unknown_template_name_is_refused():
    message = render_error({"ui": {"templates": {"logn.html": "<p></p>"}}})
    assert "logn.html" in message


def test_templates_whose_first_line_is_indented_render_as_written():
    text = "  {% extends \"base.html\" %}\n{% block content %}<p>hi</p>{% endblock %}\n"
    r = render({"ui": {"templates": {"signed_out.html": text}}})
    assert r.get("ConfigMap", f"{FULLNAME}-templates")["data"]["signed_out.html"] == text


def test_a_templates_dir_elsewhere_than_the_mount_is_refused():
    message = render_error({"ui": {"templates": {"login.html": "x"}}, "config": {"ui": {"templatesDir": "/srv/t"}}})
    assert "config.ui.templatesDir" in message and "/etc/orchestrator/templates" in message
