"""The API-server emulator, exercised only through the official kubernetes client.

Each test pins one semantic the operator relies on, so that a regression in the
emulator (which the operator's Kubernetes tests trust) shows up here by name.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import urllib3
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from tests.support.kube_emulator import KubeEmulator

GROUP, VERSION, PLURAL = "stage.rollout.dev", "v1alpha1", "stagerollouts"
NS = "team-a"

STAGE_ROLLOUT_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"{PLURAL}.{GROUP}"},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {
            "kind": "StageRollout",
            "listKind": "StageRolloutList",
            "plural": PLURAL,
            "singular": "stagerollout",
            "shortNames": ["sro"],
        },
        "versions": [
            {
                "name": VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "x-kubernetes-preserve-unknown-fields": True,
                    }
                },
            }
        ],
    },
}


def wait_until(condition: Callable[[], Any], timeout: float = 5.0, interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def status_body(error: ApiException) -> dict[str, Any]:
    return dict(json.loads(error.body))


def first_events(
    list_method: Callable[..., Any], count: int, *args: Any, **kwargs: Any
) -> list[dict[str, Any]]:
    """The first `count` watch events (the stream is stopped then; 5 s at most)."""
    stream = watch.Watch()
    events: list[dict[str, Any]] = []
    for event in stream.stream(list_method, *args, timeout_seconds=5, **kwargs):
        events.append(event)
        if len(events) == count:
            stream.stop()
    return events


@pytest.fixture
def api(kube: KubeEmulator) -> client.ApiClient:
    return kube.api_client()


@pytest.fixture
def core(api: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api)


@pytest.fixture
def apps(api: client.ApiClient) -> client.AppsV1Api:
    return client.AppsV1Api(api)


@pytest.fixture
def batch(api: client.ApiClient) -> client.BatchV1Api:
    return client.BatchV1Api(api)


@pytest.fixture
def leases(api: client.ApiClient) -> client.CoordinationV1Api:
    return client.CoordinationV1Api(api)


@pytest.fixture
def custom(kube: KubeEmulator, api: client.ApiClient) -> client.CustomObjectsApi:
    kube.register_crd(copy.deepcopy(STAGE_ROLLOUT_CRD))
    return client.CustomObjectsApi(api)


def config_map(name: str, data: dict[str, str] | None = None, **labels: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels}, "data": data or {"MODE": "warn"}}


def rollout(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "StageRollout",
        "metadata": {"name": name},
        "spec": {"plan": {"name": "stage-validation-v3"}, **spec},
    }


def deployment(name: str, image: str = "app:1", replicas: int = 2, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [
                        {"name": "app", "image": image, "env": [{"name": "MODE", "value": "warn"}]},
                        {"name": "sidecar", "image": "proxy:1"},
                    ]
                },
            },
            **spec,
        },
    }


def job(name: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 2,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "check", "image": "check:1"}],
                }
            },
        },
    }


def lease(name: str, holder: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15},
    }


# --- metadata and basic errors ----------------------------------------------------------


def test_created_objects_get_uid_timestamp_and_resource_version(core: client.CoreV1Api) -> None:
    created = core.create_namespaced_config_map(NS, config_map("flags"))

    assert len(created.metadata.uid) == 36
    assert created.metadata.creation_timestamp is not None
    assert int(created.metadata.resource_version) > 0
    assert created.metadata.namespace == NS
    assert created.metadata.generation is None  # ConfigMaps have no generation on a real server


def test_resource_version_is_one_global_counter_bumped_by_every_write(
    core: client.CoreV1Api, leases: client.CoordinationV1Api
) -> None:
    first = core.create_namespaced_config_map(NS, config_map("flags"))
    other_kind = leases.create_namespaced_lease(NS, lease("leader", "a"))
    patched = core.patch_namespaced_config_map("flags", NS, {"data": {"MODE": "enforce"}})

    versions = [int(o.metadata.resource_version) for o in (first, other_kind, patched)]
    assert versions == sorted(versions) and len(set(versions)) == 3
    assert (
        core.list_namespaced_config_map(NS).metadata.resource_version
        == patched.metadata.resource_version
    )


def test_reading_a_missing_object_is_a_not_found_status(core: client.CoreV1Api) -> None:
    with pytest.raises(ApiException) as raised:
        core.read_namespaced_config_map("absent", NS)

    assert raised.value.status == 404
    body = status_body(raised.value)
    assert (body["kind"], body["status"], body["reason"], body["code"]) == (
        "Status",
        "Failure",
        "NotFound",
        404,
    )
    assert body["message"] == 'configmaps "absent" not found'


def test_creating_an_existing_name_is_already_exists(core: client.CoreV1Api) -> None:
    core.create_namespaced_config_map(NS, config_map("flags"))

    with pytest.raises(ApiException) as raised:
        core.create_namespaced_config_map(NS, config_map("flags"))

    assert raised.value.status == 409
    assert status_body(raised.value)["reason"] == "AlreadyExists"


def test_names_must_be_dns_1123_subdomains(core: client.CoreV1Api) -> None:
    with pytest.raises(ApiException) as raised:
        core.create_namespaced_config_map(NS, config_map("Bad_Name"))

    body = status_body(raised.value)
    assert raised.value.status == 422 and body["reason"] == "Invalid"
    assert body["details"]["causes"][0]["field"] == "metadata.name"
    assert "RFC 1123 subdomain" in body["message"]


def test_generate_name_gets_a_random_suffix(core: client.CoreV1Api) -> None:
    created = core.create_namespaced_config_map(NS, {"metadata": {"generateName": "flags-"}})

    assert created.metadata.name.startswith("flags-") and len(created.metadata.name) == 11


# --- optimistic concurrency -------------------------------------------------------------------


def test_replacing_with_a_stale_resource_version_conflicts(core: client.CoreV1Api) -> None:
    stale = core.create_namespaced_config_map(NS, config_map("flags"))
    core.patch_namespaced_config_map("flags", NS, {"data": {"MODE": "enforce"}})

    stale.data = {"MODE": "off"}
    with pytest.raises(ApiException) as raised:
        core.replace_namespaced_config_map("flags", NS, stale)

    assert raised.value.status == 409
    body = status_body(raised.value)
    assert body["reason"] == "Conflict"
    assert "the object has been modified" in body["message"]
    assert core.read_namespaced_config_map("flags", NS).data == {"MODE": "enforce"}


def test_patch_carrying_a_stale_resource_version_conflicts(core: client.CoreV1Api) -> None:
    created = core.create_namespaced_config_map(NS, config_map("flags"))
    core.patch_namespaced_config_map("flags", NS, {"data": {"MODE": "enforce"}})

    with pytest.raises(ApiException) as raised:
        core.patch_namespaced_config_map(
            "flags",
            NS,
            {
                "metadata": {"resourceVersion": created.metadata.resource_version},
                "data": {"MODE": "off"},
            },
            _content_type="application/merge-patch+json",
        )

    assert raised.value.status == 409


def test_replacing_a_custom_object_without_resource_version_is_invalid(
    custom: client.CustomObjectsApi,
) -> None:
    custom.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, rollout("r1"))

    with pytest.raises(ApiException) as raised:
        custom.replace_namespaced_custom_object(
            GROUP, VERSION, NS, PLURAL, "r1", rollout("r1", paused=True)
        )

    assert raised.value.status == 422
    assert status_body(raised.value)["message"] == (
        'stagerollouts.stage.rollout.dev "r1" is invalid: metadata.resourceVersion: '
        "Invalid value: 0x0: must be specified for an update"
    )


def test_configmap_replace_without_resource_version_is_unconditional_as_on_a_real_server(
    core: client.CoreV1Api,
) -> None:
    core.create_namespaced_config_map(NS, config_map("flags"))

    replaced = core.replace_namespaced_config_map(
        "flags", NS, config_map("flags", {"MODE": "enforce"})
    )

    assert replaced.data == {"MODE": "enforce"}


def test_an_update_that_changes_nothing_keeps_the_resource_version(core: client.CoreV1Api) -> None:
    created = core.create_namespaced_config_map(NS, config_map("flags", {"MODE": "warn"}))

    patched = core.patch_namespaced_config_map("flags", NS, {"data": {"MODE": "warn"}})

    assert patched.metadata.resource_version == created.metadata.resource_version


# --- patches -------------------------------------------------------------------------------------


def test_client_default_patch_content_types(
    kube: KubeEmulator, core: client.CoreV1Api, custom: client.CustomObjectsApi
) -> None:
    core.create_namespaced_config_map(NS, config_map("flags"))
    custom.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, rollout("r1"))

    core.patch_namespaced_config_map("flags", NS, {"data": {"A": "1"}})
    core.patch_namespaced_config_map("flags", NS, [{"op": "add", "path": "/data/B", "value": "2"}])
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, NS, PLURAL, "r1", {"spec": {"paused": True}}
    )

    sent = [record.content_type for record in kube.requests(method="PATCH")]
    assert sent == [
        "application/strategic-merge-patch+json",  # a dict body to a built-in kind
        "application/json-patch+json",  # a list body
        "application/merge-patch+json",  # CustomObjectsApi
    ]


def test_merge_patch_removes_a_key_set_to_null(custom: client.CustomObjectsApi) -> None:
    custom.create_namespaced_custom_object(
        GROUP,
        VERSION,
        NS,
        PLURAL,
        rollout("r1", target={"configMap": "flags", "namespace": "apps"}),
    )

    patched = custom.patch_namespaced_custom_object(
        GROUP, VERSION, NS, PLURAL, "r1", {"spec": {"target": {"namespace": None}}}
    )

    assert patched["spec"]["target"] == {"configMap": "flags"}


def test_merge_patch_replaces_lists_whole(core: client.CoreV1Api, apps: client.AppsV1Api) -> None:
    apps.create_namespaced_deployment(NS, deployment("web"))
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "app:2"}]}}}}

    patched = apps.patch_namespaced_deployment(
        "web", NS, patch, _content_type="application/merge-patch+json"
    )

    assert [c.name for c in patched.spec.template.spec.containers] == ["app"]


def test_strategic_merge_patch_merges_containers_by_name(apps: client.AppsV1Api) -> None:
    apps.create_namespaced_deployment(NS, deployment("web"))

    patched = apps.patch_namespaced_deployment(
        "web",
        NS,
        {
            "spec": {
                "template": {
                    "spec": {
                        "containers": [
                            {"name": "app", "env": [{"name": "PERCENT", "value": "10"}]},
                        ]
                    }
                }
            }
        },
    )

    containers = {c.name: c for c in patched.spec.template.spec.containers}
    assert list(containers) == ["app", "sidecar"]
    assert containers["app"].image == "app:1"
    assert [(e.name, e.value) for e in containers["app"].env] == [
        ("MODE", "warn"),
        ("PERCENT", "10"),
    ]


def test_strategic_merge_patch_delete_directive_removes_a_list_element(
    apps: client.AppsV1Api,
) -> None:
    apps.create_namespaced_deployment(NS, deployment("web"))

    patched = apps.patch_namespaced_deployment(
        "web",
        NS,
        {"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "$patch": "delete"}]}}}},
    )

    assert [c.name for c in patched.spec.template.spec.containers] == ["app"]


def test_custom_objects_reject_strategic_merge_patch(custom: client.CustomObjectsApi) -> None:
    custom.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, rollout("r1"))

    with pytest.raises(ApiException) as raised:
        custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            NS,
            PLURAL,
            "r1",
            {"spec": {"paused": True}},
            _content_type="application/strategic-merge-patch+json",
        )

    assert raised.value.status == 415
    assert status_body(raised.value)["reason"] == "UnsupportedMediaType"


def test_json_patch_applies_add_replace_and_remove(core: client.CoreV1Api) -> None:
    core.create_namespaced_config_map(NS, config_map("flags", {"MODE": "warn", "OLD": "x"}))

    patched = core.patch_namespaced_config_map(
        "flags",
        NS,
        [
            {"op": "test", "path": "/data/MODE", "value": "warn"},
            {"op": "replace", "path": "/data/MODE", "value": "enforce"},
            {"op": "add", "path": "/data/PERCENT", "value": "10"},
            {"op": "remove", "path": "/data/OLD"},
        ],
    )

    assert patched.data == {"MODE": "enforce", "PERCENT": "10"}


def test_failing_json_patch_test_operation_is_invalid(core: client.CoreV1Api) -> None:
    core.create_namespaced_config_map(NS, config_map("flags", {"MODE": "warn"}))

    with pytest.raises(ApiException) as raised:
        core.patch_namespaced_config_map(
            "flags",
            NS,
            [
                {"op": "test", "path": "/data/MODE", "value": "enforce"},
                {"op": "replace", "path": "/data/MODE", "value": "off"},
            ],
        )

    assert raised.value.status == 422
    assert core.read_namespaced_config_map("flags", NS).data == {"MODE": "warn"}


def test_patch_without_a_patch_content_type_is_unsupported(
    api: client.ApiClient, kube: KubeEmulator
) -> None:
    client.CoreV1Api(api).create_namespaced_config_map(NS, config_map("flags"))
    http = urllib3.PoolManager()

    response = http.request(
        "PATCH",
        f"{kube.url}/api/v1/namespaces/{NS}/configmaps/flags",
        body=b'{"data": {"A": "1"}}',
        headers={"Content-Type": "application/json"},
    )

    assert response.status == 415


# --- status subresource and generation ----------------------------------------------------------


def test_spec_changes_bump_the_generation_of_custom_objects(
    custom: client.CustomObjectsApi,
) -> None:
    created = custom.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, rollout("r1"))

    labelled = custom.patch_namespaced_custom_object(
        GROUP, VERSION, NS, PLURAL, "r1", {"metadata": {"labels": {"team": "a"}}}
    )
    respecced = custom.patch_namespaced_custom_object(
        GROUP, VERSION, NS, PLURAL, "r1", {"spec": {"paused": True}}
    )

    assert created["metadata"]["generation"] == 1
    assert labelled["metadata"]["generation"] == 1
    assert respecced["metadata"]["generation"] == 2


def test_status_writes_do_not_bump_generation(custom: client.CustomObjectsApi) -> None:
    created = custom.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, rollout("r1"))

    written = custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, NS, PLURAL, "r1", {"status": {"step": "2.1", "state": "applying"}}
    )

    assert written["status"] == {"step": "2.1", "state": "applying"}
    assert written["metadata"]["generation"] == 1
    assert int(written["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])


def test_main_resource_writes_ignore_status(custom: client.CustomObjectsApi) -> None:
    created = custom.create_namespaced_custom_object(
        GROUP, VERSION, NS, PLURAL, {**rollout("r1"), "status": {"step": "4"}}
    )
    custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, NS, PLURAL, "r1", {"status": {"step": "2.1"}}
    )

    patched = custom.patch_namespaced_custom_object(
        GROUP, VERSION, NS, PLURAL, "r1", {"spec": {"paused": True}, "status": {"step": "3@100"}}
    )

    assert "status" not in created
    assert patched["status"] == {"step": "2.1"}
    assert patched["spec"]["paused"] is True


def test_deployment_replace_ignores_status(apps: client.AppsV1Api) -> None:
    apps.create_namespaced_deployment(NS, deployment("web", replicas=1))
    current = wait_until(
        lambda: (d := apps.read_namespaced_deployment("web", NS)).status.ready_replicas and d
    )

    current.status.ready_replicas = 99
    current.spec.replicas = 2
    replaced = apps.replace_namespaced_deployment("web", NS, current)

    assert replaced.status.ready_replicas == 1
    assert (replaced.spec.replicas, replaced.metadata.generation) == (2, 2)


def test_status_writes_change_only_status(custom: client.CustomObjectsApi) -> None:
    current = custom.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, rollout("r1"))
    current["spec"]["paused"] = True
    current["metadata"]["labels"] = {"sneaky": "yes"}
    current["status"] = {"step": "2.4"}

    written = custom.replace_namespaced_custom_object_status(
        GROUP, VERSION, NS, PLURAL, "r1", current
    )

    assert written["status"] == {"step": "2.4"}
    assert "paused" not in written["spec"]
    assert "labels" not in written["metadata"]


def test_status_replace_with_a_stale_resource_version_conflicts(
    custom: client.CustomObjectsApi,
) -> None:
    stale = custom.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, rollout("r1"))
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, NS, PLURAL, "r1", {"spec": {"paused": True}}
    )
    stale["status"] = {"step": "2.4"}

    with pytest.raises(ApiException) as raised:
        custom.replace_namespaced_custom_object_status(GROUP, VERSION, NS, PLURAL, "r1", stale)

    assert raised.value.status == 409


# --- watches --------------------------------------------------------------------------------------


def test_watch_streams_added_modified_and_deleted(core: client.CoreV1Api) -> None:
    start = core.list_namespaced_config_map(NS).metadata.resource_version
    core.create_namespaced_config_map(NS, config_map("flags"))
    core.patch_namespaced_config_map("flags", NS, {"data": {"MODE": "enforce"}})
    core.delete_namespaced_config_map("flags", NS)

    events = first_events(core.list_namespaced_config_map, 3, NS, resource_version=start)

    assert [(e["type"], e["object"].metadata.name) for e in events] == [
        ("ADDED", "flags"),
        ("MODIFIED", "flags"),
        ("DELETED", "flags"),
    ]


def test_watch_without_resource_version_starts_with_the_current_objects(
    core: client.CoreV1Api,
) -> None:
    core.create_namespaced_config_map(NS, config_map("a"))
    core.create_namespaced_config_map(NS, config_map("b"))

    events = first_events(core.list_namespaced_config_map, 2, NS)

    assert [(e["type"], e["object"].metadata.name) for e in events] == [
        ("ADDED", "a"),
        ("ADDED", "b"),
    ]


def test_watch_resumes_after_a_resource_version(core: client.CoreV1Api) -> None:
    core.create_namespaced_config_map(NS, config_map("before"))
    resume_from = core.list_namespaced_config_map(NS).metadata.resource_version
    core.create_namespaced_config_map(NS, config_map("after"))

    events = first_events(core.list_namespaced_config_map, 1, NS, resource_version=resume_from)

    assert [e["object"].metadata.name for e in events] == ["after"]


def test_watch_sees_live_writes(core: client.CoreV1Api) -> None:
    start = core.list_namespaced_config_map(NS).metadata.resource_version
    writer = threading.Timer(0.2, lambda: core.create_namespaced_config_map(NS, config_map("live")))
    writer.start()
    stream = watch.Watch()
    seen = []
    for event in stream.stream(
        core.list_namespaced_config_map, NS, resource_version=start, timeout_seconds=5
    ):
        seen.append(event["object"].metadata.name)
        stream.stop()
    writer.join()

    assert seen == ["live"]


def test_watch_from_a_compacted_resource_version_gets_410(
    kube: KubeEmulator, core: client.CoreV1Api
) -> None:
    old = core.create_namespaced_config_map(NS, config_map("flags")).metadata.resource_version
    core.patch_namespaced_config_map("flags", NS, {"data": {"MODE": "enforce"}})
    kube.compact()

    with pytest.raises(ApiException) as raised:
        list(
            watch.Watch().stream(
                core.list_namespaced_config_map, NS, resource_version=old, timeout_seconds=1
            )
        )

    assert raised.value.status == 410
    assert "too old resource version" in raised.value.reason


def test_watch_from_a_wrapped_history_gets_410(kube_emulator: Callable[..., KubeEmulator]) -> None:
    kube = kube_emulator(history_size=3)
    core = client.CoreV1Api(kube.api_client())
    old = core.create_namespaced_config_map(NS, config_map("flags")).metadata.resource_version
    for value in "abcd":
        core.patch_namespaced_config_map("flags", NS, {"data": {"MODE": value}})

    http = urllib3.PoolManager()
    response = http.request(
        "GET",
        f"{kube.url}/api/v1/namespaces/{NS}/configmaps?watch=1&resourceVersion={old}&timeoutSeconds=1",
    )

    event = json.loads(response.data.decode().splitlines()[0])
    assert event["type"] == "ERROR"
    assert (event["object"]["code"], event["object"]["reason"]) == (410, "Expired")


def test_watch_filters_by_label_selector_and_reports_leaving_as_deleted(
    core: client.CoreV1Api,
) -> None:
    start = core.list_namespaced_config_map(NS).metadata.resource_version
    core.create_namespaced_config_map(NS, config_map("mine", owner="stage"))
    core.create_namespaced_config_map(NS, config_map("other", owner="someone"))
    core.patch_namespaced_config_map("mine", NS, {"metadata": {"labels": {"owner": "moved"}}})

    events = first_events(
        core.list_namespaced_config_map, 2, NS, resource_version=start, label_selector="owner=stage"
    )

    assert [(e["type"], e["object"].metadata.name) for e in events] == [
        ("ADDED", "mine"),
        ("DELETED", "mine"),
    ]


def test_watch_filters_by_field_selector_on_the_name(core: client.CoreV1Api) -> None:
    start = core.list_namespaced_config_map(NS).metadata.resource_version
    core.create_namespaced_config_map(NS, config_map("a"))
    core.create_namespaced_config_map(NS, config_map("b"))

    events = first_events(
        core.list_namespaced_config_map,
        1,
        NS,
        resource_version=start,
        field_selector="metadata.name=b",
    )

    assert [e["object"].metadata.name for e in events] == ["b"]


def test_watch_sends_bookmarks_when_allowed(kube_emulator: Callable[..., KubeEmulator]) -> None:
    kube = kube_emulator(bookmark_interval=0.1)
    core = client.CoreV1Api(kube.api_client())
    start = core.list_namespaced_config_map(NS).metadata.resource_version

    events = first_events(
        core.list_namespaced_config_map, 2, NS, resource_version=start, allow_watch_bookmarks=True
    )

    assert [e["type"] for e in events] == ["BOOKMARK", "BOOKMARK"]
    assert events[0]["raw_object"]["metadata"]["resourceVersion"] == start


def test_watch_ends_after_timeout_seconds(core: client.CoreV1Api) -> None:
    started = time.monotonic()

    list(watch.Watch().stream(core.list_namespaced_config_map, NS, timeout_seconds=1))

    assert 0.9 <= time.monotonic() - started < 3


def test_client_watch_resumes_after_the_server_closes_the_stream(
    kube: KubeEmulator, core: client.CoreV1Api
) -> None:
    start = core.list_namespaced_config_map(NS).metadata.resource_version
    core.create_namespaced_config_map(NS, config_map("first"))
    stream = watch.Watch()
    safety = threading.Timer(5, stream.stop)
    safety.start()

    names = []
    for event in stream.stream(core.list_namespaced_config_map, NS, resource_version=start):
        names.append(event["object"].metadata.name)
        if len(names) == 1:
            kube.close_watches()  # the client reconnects from the last resourceVersion it saw
            core.create_namespaced_config_map(NS, config_map("second"))
        else:
            stream.stop()
    safety.cancel()

    assert names == ["first", "second"]
    watches = kube.requests(verb="watch", resource="configmaps")
    assert len(watches) == 2
    assert watches[1].query["resourceVersion"] != start


def test_custom_object_watch_streams_status_changes(custom: client.CustomObjectsApi) -> None:
    created = custom.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, rollout("r1"))
    custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, NS, PLURAL, "r1", {"status": {"step": "2.1"}}
    )

    events = first_events(
        custom.list_namespaced_custom_object,
        1,
        GROUP,
        VERSION,
        NS,
        PLURAL,
        resource_version=created["metadata"]["resourceVersion"],
    )

    assert [(e["type"], e["object"]["status"]) for e in events] == [("MODIFIED", {"step": "2.1"})]


# --- lists and selectors --------------------------------------------------------------------------


def test_list_label_selectors(core: client.CoreV1Api) -> None:
    core.create_namespaced_config_map(NS, config_map("a", tier="web", env="prod"))
    core.create_namespaced_config_map(NS, config_map("b", tier="db", env="prod"))
    core.create_namespaced_config_map(NS, config_map("c", tier="web"))

    def names(selector: str) -> list[str]:
        return [
            item.metadata.name
            for item in core.list_namespaced_config_map(NS, label_selector=selector).items
        ]

    assert names("tier=web") == ["a", "c"]
    assert names("tier!=web") == ["b"]
    assert names("tier=web,env=prod") == ["a"]
    assert names("tier in (db,cache)") == ["b"]
    assert names("tier notin (db)") == ["a", "c"]
    assert names("env") == ["a", "b"]
    assert names("!env") == ["c"]


def test_unsupported_field_selector_is_a_bad_request(core: client.CoreV1Api) -> None:
    with pytest.raises(ApiException) as raised:
        core.list_namespaced_config_map(NS, field_selector="data.MODE=warn")

    assert raised.value.status == 400


def test_lists_across_namespaces_and_paginates(core: client.CoreV1Api) -> None:
    for namespace, name in (("a", "x"), ("b", "y"), ("b", "z")):
        core.create_namespaced_config_map(namespace, config_map(name))

    first = core.list_config_map_for_all_namespaces(limit=2)
    rest = core.list_config_map_for_all_namespaces(limit=2, _continue=first.metadata._continue)

    assert [i.metadata.name for i in first.items] == ["x", "y"]
    assert first.metadata.remaining_item_count == 1
    assert [i.metadata.name for i in rest.items] == ["z"]


def test_pods_can_be_listed_even_when_none_exist(core: client.CoreV1Api) -> None:
    assert core.list_namespaced_pod(NS).items == []


# --- leases ---------------------------------------------------------------------------------------


def test_lease_update_with_a_stale_version_conflicts(leases: client.CoordinationV1Api) -> None:
    mine = leases.create_namespaced_lease(NS, lease("leader", "pod-a"))
    theirs = leases.read_namespaced_lease("leader", NS)
    theirs.spec.holder_identity = "pod-b"
    leases.replace_namespaced_lease("leader", NS, theirs)

    mine.spec.renew_time = None
    with pytest.raises(ApiException) as raised:
        leases.replace_namespaced_lease("leader", NS, mine)

    assert raised.value.status == 409
    assert leases.read_namespaced_lease("leader", NS).spec.holder_identity == "pod-b"


def test_lease_replace_without_resource_version_is_invalid(
    leases: client.CoordinationV1Api,
) -> None:
    leases.create_namespaced_lease(NS, lease("leader", "pod-a"))

    with pytest.raises(ApiException) as raised:
        leases.replace_namespaced_lease("leader", NS, lease("leader", "pod-b"))

    assert raised.value.status == 422


def test_lease_put_creates_a_missing_lease(leases: client.CoordinationV1Api) -> None:
    created = leases.replace_namespaced_lease("leader", NS, lease("leader", "pod-a"))

    assert created.spec.holder_identity == "pod-a"


# --- deployments and jobs -------------------------------------------------------------------------


def test_deployment_rolls_out_after_a_template_change(apps: client.AppsV1Api) -> None:
    apps.create_namespaced_deployment(NS, deployment("web", replicas=3))
    wait_until(
        lambda: (apps.read_namespaced_deployment("web", NS).status.available_replicas or 0) == 3
    )

    changed = apps.patch_namespaced_deployment(
        "web",
        NS,
        {"spec": {"template": {"metadata": {"annotations": {"stage.rollout.dev/flags": "h2"}}}}},
    )
    assert changed.metadata.generation == 2
    observed = wait_until(
        lambda: (
            (d := apps.read_namespaced_deployment("web", NS)).status.observed_generation == 2 and d
        )
    )
    assert observed.status.updated_replicas < 3  # in progress first

    done = wait_until(
        lambda: (d := apps.read_namespaced_deployment("web", NS)).status.updated_replicas == 3 and d
    )
    assert (done.status.ready_replicas, done.status.available_replicas) == (3, 3)
    progressing = next(c for c in done.status.conditions if c.type == "Progressing")
    assert progressing.reason == "NewReplicaSetAvailable"
    assert done.metadata.annotations["deployment.kubernetes.io/revision"] == "2"


def test_stuck_deployment_reports_progress_deadline_exceeded(
    kube: KubeEmulator, apps: client.AppsV1Api
) -> None:
    kube.stall_deployment(NS, "web")
    apps.create_namespaced_deployment(NS, deployment("web", progressDeadlineSeconds=1))

    stuck = wait_until(
        lambda: next(
            (
                c
                for c in apps.read_namespaced_deployment("web", NS).status.conditions or []
                if c.type == "Progressing" and c.status == "False"
            ),
            None,
        ),
        timeout=5,
    )

    assert stuck.reason == "ProgressDeadlineExceeded"
    assert not apps.read_namespaced_deployment("web", NS).status.available_replicas


def test_deployment_selector_must_match_template_labels(apps: client.AppsV1Api) -> None:
    body = deployment("web")
    body["spec"]["selector"] = {"matchLabels": {"app": "other"}}

    with pytest.raises(ApiException) as raised:
        apps.create_namespaced_deployment(NS, body)

    assert raised.value.status == 422


def test_job_completes_or_fails_as_configured(kube: KubeEmulator, batch: client.BatchV1Api) -> None:
    kube.fail_jobs(r"^smoke-bad")
    batch.create_namespaced_job(NS, job("smoke-good"))
    batch.create_namespaced_job(NS, job("smoke-bad-1"))

    good = wait_until(
        lambda: (j := batch.read_namespaced_job("smoke-good", NS)).status.conditions and j
    )
    bad = wait_until(
        lambda: (j := batch.read_namespaced_job("smoke-bad-1", NS)).status.conditions and j
    )

    assert good.status.succeeded == 1 and good.status.completion_time is not None
    assert "Complete" in {c.type for c in good.status.conditions if c.status == "True"}
    assert bad.status.failed == 3  # backoffLimit + 1
    failed = next(c for c in bad.status.conditions if c.type == "Failed")
    assert (failed.status, failed.reason) == ("True", "BackoffLimitExceeded")


def test_job_without_restart_policy_is_invalid(batch: client.BatchV1Api) -> None:
    body = job("check")
    del body["spec"]["template"]["spec"]["restartPolicy"]

    with pytest.raises(ApiException) as raised:
        batch.create_namespaced_job(NS, body)

    assert raised.value.status == 422
    assert "spec.template.spec.restartPolicy" in status_body(raised.value)["message"]


def test_held_job_stays_active(kube: KubeEmulator, batch: client.BatchV1Api) -> None:
    kube.hold_jobs("slow")
    batch.create_namespaced_job(NS, job("slow-check"))

    time.sleep(0.4)
    running = batch.read_namespaced_job("slow-check", NS)
    kube.release_jobs()

    assert running.status.active == 1 and not running.status.conditions
    wait_until(lambda: batch.read_namespaced_job("slow-check", NS).status.succeeded == 1)


# --- events ---------------------------------------------------------------------------------------


def test_core_and_events_v1_events_share_storage(
    api: client.ApiClient, core: client.CoreV1Api
) -> None:
    events_v1 = client.EventsV1Api(api)
    core.create_namespaced_event(
        NS,
        {
            "metadata": {"name": "r1.core"},
            # without eventTime the client cannot read this event back as events.k8s.io/v1:
            # the real server renders it as null and EventsV1Event requires a datetime
            "eventTime": "2025-01-01T00:00:00.000000Z",
            "involvedObject": {"kind": "StageRollout", "name": "r1", "namespace": NS},
            "reason": "Promoted",
            "message": "2.1 -> 2.4",
            "type": "Normal",
        },
    )
    events_v1.create_namespaced_event(
        NS,
        {
            "metadata": {"name": "r1.v1"},
            "eventTime": "2025-01-01T00:00:00.000000Z",
            "reportingController": "stage.rollout.dev/operator",
            "reportingInstance": "operator-0",
            "action": "Promote",
            "reason": "Promoted",
            "note": "2.4 -> 2.5",
            "type": "Normal",
            "regarding": {"kind": "StageRollout", "name": "r1", "namespace": NS},
        },
    )

    as_core = {e.metadata.name: e.message for e in core.list_namespaced_event(NS).items}
    as_v1 = {e.metadata.name: e.note for e in events_v1.list_namespaced_event(NS).items}

    assert as_core == {"r1.core": "2.1 -> 2.4", "r1.v1": "2.4 -> 2.5"}
    assert as_v1 == as_core


# --- faults ---------------------------------------------------------------------------------------


def test_injected_429_reaches_the_client_as_api_exception(
    kube: KubeEmulator, core: client.CoreV1Api
) -> None:
    core.create_namespaced_config_map(NS, config_map("flags"))
    kube.inject(method="PATCH", path_regex="/configmaps/flags$", status=429, retry_after=2)

    with pytest.raises(ApiException) as raised:
        core.patch_namespaced_config_map("flags", NS, {"data": {"MODE": "enforce"}})

    assert raised.value.status == 429
    assert raised.value.headers["Retry-After"] == "2"
    assert status_body(raised.value)["reason"] == "TooManyRequests"
    assert core.patch_namespaced_config_map("flags", NS, {"data": {"MODE": "enforce"}}).data == {
        "MODE": "enforce"
    }


def test_a_429_with_retry_after_on_a_get_is_retried_by_the_client(
    kube: KubeEmulator, core: client.CoreV1Api
) -> None:
    # urllib3's default Retry honours Retry-After on 413/429/503 for idempotent methods
    kube.inject(method="GET", path_regex="/configmaps$", status=429, retry_after=0)

    assert core.list_namespaced_config_map(NS).items == []
    assert [r.status for r in kube.requests(method="GET", path_regex="/configmaps$")] == [429, 200]


@pytest.mark.parametrize(
    ("status", "reason"), [(409, "Conflict"), (500, "InternalError"), (503, "ServiceUnavailable")]
)
def test_injected_statuses_are_status_objects(
    kube: KubeEmulator, core: client.CoreV1Api, status: int, reason: str
) -> None:
    kube.inject(method="POST", path_regex="/configmaps$", status=status)

    with pytest.raises(ApiException) as raised:
        core.create_namespaced_config_map(NS, config_map("flags"))

    assert raised.value.status == status
    assert (status_body(raised.value)["kind"], status_body(raised.value)["reason"]) == (
        "Status",
        reason,
    )
    assert core.list_namespaced_config_map(NS).items == []


def test_injected_faults_repeat_until_cleared(kube: KubeEmulator, core: client.CoreV1Api) -> None:
    kube.inject(path_regex="/configmaps", status=503, times=None)

    statuses = []
    for _ in range(3):
        with pytest.raises(ApiException) as raised:
            core.list_namespaced_config_map(NS)
        statuses.append(raised.value.status)
    kube.clear_faults()

    assert statuses == [503, 503, 503]
    assert core.list_namespaced_config_map(NS).items == []


def test_injected_delay_times_out_the_client(kube: KubeEmulator) -> None:
    configuration = kube.client_configuration()
    configuration.retries = False
    core = client.CoreV1Api(client.ApiClient(configuration))
    kube.inject(method="GET", path_regex="/configmaps$", delay=1.0)

    with pytest.raises(urllib3.exceptions.ReadTimeoutError):
        core.list_namespaced_config_map(NS, _request_timeout=0.2)


def test_a_held_request_is_served_after_its_release_with_what_was_written_meanwhile(
    kube: KubeEmulator, core: client.CoreV1Api
) -> None:
    held = kube.inject(method="GET", path_regex="/configmaps$", hold=True)
    answered: list[list[str]] = []
    reader = threading.Thread(
        target=lambda: answered.append(
            [c.metadata.name for c in core.list_namespaced_config_map(NS).items]
        )
    )
    reader.start()
    deadline = time.monotonic() + 5
    while held.hits == 0:
        assert time.monotonic() < deadline, "the list never arrived"
        time.sleep(0.01)
    # Written after the list arrived: a list answered on arrival would not have it.
    core.create_namespaced_config_map(NS, {"metadata": {"name": "meanwhile"}})

    held.release()
    reader.join(timeout=5)

    assert answered == [["meanwhile"]]


def test_injected_410_on_a_watch_is_an_error_event(
    kube: KubeEmulator, core: client.CoreV1Api
) -> None:
    kube.inject(path_regex="/configmaps$", status=410, times=None)

    with pytest.raises(ApiException) as raised:
        list(
            watch.Watch().stream(
                core.list_namespaced_config_map, NS, resource_version="1", timeout_seconds=1
            )
        )

    assert raised.value.status == 410


# --- users and the request log ------------------------------------------------------------------------


def test_selfsubjectreview_returns_the_token_user(kube: KubeEmulator) -> None:
    kube.add_token("s3cret", "system:serviceaccount:stage:operator", ["system:serviceaccounts"])
    authn = client.AuthenticationV1Api(client.ApiClient(kube.client_configuration(token="s3cret")))

    review = authn.create_self_subject_review(
        {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
    )

    assert review.status.user_info.username == "system:serviceaccount:stage:operator"
    assert "system:serviceaccounts" in review.status.user_info.groups


def test_unknown_tokens_are_unauthorized(kube: KubeEmulator) -> None:
    core = client.CoreV1Api(client.ApiClient(kube.client_configuration(token="nobody-knows-me")))

    with pytest.raises(ApiException) as raised:
        core.list_namespaced_config_map(NS)

    assert raised.value.status == 401


def test_request_log_records_users_and_rbac_rules(kube: KubeEmulator) -> None:
    kube.add_token("t-op", "operator")
    core = client.CoreV1Api(client.ApiClient(kube.client_configuration(token="t-op")))
    alice = client.CoreV1Api(kube.api_client(user="alice"))
    core.create_namespaced_config_map(NS, config_map("flags"))
    core.patch_namespaced_config_map("flags", NS, {"data": {"A": "1"}})
    alice.read_namespaced_config_map("flags", NS)

    patch = kube.requests(method="PATCH")[0]

    assert (patch.path, patch.content_type, patch.user, patch.status) == (
        f"/api/v1/namespaces/{NS}/configmaps/flags",
        "application/strategic-merge-patch+json",
        "operator",
        200,
    )
    assert kube.rbac_rules_used("operator") == {
        ("", "configmaps", "create"),
        ("", "configmaps", "patch"),
    }
    assert kube.rbac_rules_used("alice") == {("", "configmaps", "get")}


# --- CRDs -------------------------------------------------------------------------------------------


def test_posting_a_crd_serves_its_resource_and_discovery(api: client.ApiClient) -> None:
    extensions = client.ApiextensionsV1Api(api)
    extensions.create_custom_resource_definition(copy.deepcopy(STAGE_ROLLOUT_CRD))

    resources = client.CustomObjectsApi(api).get_api_resources(GROUP, VERSION)
    crd = extensions.read_custom_resource_definition(f"{PLURAL}.{GROUP}")

    by_name = {r.name: r for r in resources.resources}
    assert by_name[PLURAL].short_names == ["sro"] and by_name[PLURAL].namespaced is True
    assert f"{PLURAL}/status" in by_name
    assert {c.type for c in crd.status.conditions if c.status == "True"} == {
        "Established",
        "NamesAccepted",
    }


def test_crd_schema_prunes_unknown_fields_and_checks_types(
    kube: KubeEmulator, api: client.ApiClient
) -> None:
    crd = copy.deepcopy(STAGE_ROLLOUT_CRD)
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"] = {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "required": ["percent"],
                "properties": {
                    "percent": {"type": "integer", "maximum": 100},
                    "mode": {"type": "string", "default": "warn"},
                },
            },
            "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        },
    }
    kube.register_crd(crd)
    custom = client.CustomObjectsApi(api)

    created = custom.create_namespaced_custom_object(
        GROUP, VERSION, NS, PLURAL, {**rollout("r1"), "spec": {"percent": 10, "typo": True}}
    )
    with pytest.raises(ApiException) as raised:
        custom.create_namespaced_custom_object(
            GROUP, VERSION, NS, PLURAL, {**rollout("r2"), "spec": {"percent": "ten"}}
        )

    assert created["spec"] == {"percent": 10, "mode": "warn"}
    assert raised.value.status == 422
    assert "spec.percent" in status_body(raised.value)["message"]


def test_cluster_scoped_and_multi_version_crds(kube: KubeEmulator, api: client.ApiClient) -> None:
    schema = {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}
    kube.register_crd(
        {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": f"stageplans.{GROUP}"},
            "spec": {
                "group": GROUP,
                "scope": "Cluster",
                "names": {"kind": "StagePlan", "plural": "stageplans"},
                "versions": [
                    {"name": "v1alpha1", "served": True, "storage": False, "schema": schema},
                    {"name": "v1beta1", "served": True, "storage": True, "schema": schema},
                ],
            },
        }
    )
    custom = client.CustomObjectsApi(api)

    custom.create_cluster_custom_object(
        GROUP,
        "v1alpha1",
        "stageplans",
        {"apiVersion": f"{GROUP}/v1alpha1", "kind": "StagePlan", "metadata": {"name": "v3"}},
    )

    assert (
        custom.get_cluster_custom_object(GROUP, "v1beta1", "stageplans", "v3")["apiVersion"]
        == f"{GROUP}/v1beta1"
    )
    assert (
        kube.get_object("stageplans", None, "v3")["apiVersion"] == f"{GROUP}/v1beta1"
    )  # stored version


# --- deletion ----------------------------------------------------------------------------------------


def test_delete_with_finalizers_waits_for_their_removal(custom: client.CustomObjectsApi) -> None:
    custom.create_namespaced_custom_object(
        GROUP,
        VERSION,
        NS,
        PLURAL,
        {**rollout("r1"), "metadata": {"name": "r1", "finalizers": ["stage.rollout.dev/cleanup"]}},
    )

    terminating = custom.delete_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "r1")
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, NS, PLURAL, "r1", {"metadata": {"finalizers": None}}
    )

    assert terminating["metadata"]["deletionTimestamp"]
    with pytest.raises(ApiException) as raised:
        custom.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "r1")
    assert raised.value.status == 404


def test_delete_collection_by_label(core: client.CoreV1Api) -> None:
    core.create_namespaced_config_map(NS, config_map("a", owner="stage"))
    core.create_namespaced_config_map(NS, config_map("b", owner="other"))

    core.delete_collection_namespaced_config_map(NS, label_selector="owner=stage")

    assert [i.metadata.name for i in core.list_namespaced_config_map(NS).items] == ["b"]


def test_dry_run_validates_without_storing(core: client.CoreV1Api) -> None:
    answered = core.create_namespaced_config_map(NS, config_map("flags"), dry_run="All")

    assert answered.metadata.name == "flags"
    assert core.list_namespaced_config_map(NS).items == []


def test_deleting_a_missing_object_is_not_found(core: client.CoreV1Api) -> None:
    with pytest.raises(ApiException) as raised:
        core.delete_namespaced_config_map("absent", NS)

    assert raised.value.status == 404
