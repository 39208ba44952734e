"""Browser journeys through the job-manager console.

`journeys.py` (run by tests/console.rs): one Chromium (Debian's, never downloaded) for every
journey; each user gets its own context. The Rust side serves the manager over the fake
Flink with a `fake` session target, a `k8s` Kubernetes target (never contacted: its
deployments stay CANCELLED) and the deployments `orders` (RUNNING, team=payments) and
`reports` (CANCELLED, team=bi).
Environment: JM_URL, JM_TOKEN (owner), JM_VIEWER_TOKEN, JM_JAR (a file to upload),
JM_SCREENSHOTS (directory), JM_CHROMIUM.

`journeys.py real-flink` (run by crates/suite/tests/flink_e2e.rs against flink-suite with
real Flink): the deployment JM_DEPLOYMENT (a name) is RUNNING with the job JM_JOB.
Environment: JM_URL, JM_TOKEN, JM_DEPLOYMENT, JM_JOB, JM_SCREENSHOTS, JM_CHROMIUM.
"""

import os
import re
import sys
import time

from playwright.sync_api import expect, sync_playwright

URL = os.environ["JM_URL"]
OWNER = os.environ["JM_TOKEN"]
VIEWER = os.environ.get("JM_VIEWER_TOKEN", "")
JAR = os.environ.get("JM_JAR", "")
SHOTS = os.environ["JM_SCREENSHOTS"]
CHROMIUM = os.environ.get("JM_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
# Page polling is 2 s; the fake Flink's controller loop 200 ms.
LIVE = 10_000

errors = []


def step(name):
    print(f"[{time.monotonic() - T0:5.1f}s] {name}", flush=True)


def shot(page, name):
    page.screenshot(path=os.path.join(SHOTS, name + ".png"), full_page=True)


def new_page(browser, viewport):
    ctx = browser.new_context(viewport=viewport, locale="en-US", timezone_id="UTC")
    page = ctx.new_page()
    page.set_default_timeout(LIVE)
    expect.set_options(timeout=LIVE)
    page.on("pageerror", lambda e: errors.append(f"page error: {e}"))

    def on_console(m):
        # Failed API calls (the 400/409 this journey provokes) are logged by the browser
        # as "Failed to load resource"; anything else is a script error.
        if m.type == "error" and "Failed to load resource" not in m.text:
            errors.append(f"console error: {m.text}")

    page.on("console", on_console)
    return ctx, page


def login(page, token, timed=False):
    page.goto(URL + "/")
    box = page.locator("input[type=password]#token")
    expect(box).to_be_visible()
    if timed:
        # Again, now that the renderer is up, timed by the page itself from the start of
        # the navigation until the sign-in form is there: within 1 s on loopback.
        page.reload()
        page.wait_for_selector("#token")
        ms = page.evaluate("performance.now()")
        print(f"  first page (sign-in form shown) after {ms:.0f} ms", flush=True)
        assert ms < 1000, f"the login page took {ms:.0f} ms"
    box.fill(token)
    box.press("Enter")
    expect(page.locator("#deployments")).to_be_visible()


def row(page, name):
    return page.locator(f"#deployments tbody tr[data-name='{name}']")


def drop_files(page, selector, files):
    """Drops files (name, size or bytes) on an element as a real drag and drop does."""
    dt = page.evaluate_handle(
        """(files) => {
            const dt = new DataTransfer();
            for (const f of files) {
                const body = f.text !== null ? [f.text] : [new Uint8Array(f.size)];
                dt.items.add(new File(body, f.name, {type: "application/java-archive"}));
            }
            return dt;
        }""",
        files,
    )
    page.dispatch_event(selector, "dragover", {"dataTransfer": dt})
    page.dispatch_event(selector, "drop", {"dataTransfer": dt})


def owner_journey(browser):
    ctx, page = new_page(browser, DESKTOP)
    step("owner: token login shows the deployments with their states")
    login(page, OWNER, timed=True)
    expect(row(page, "orders")).to_contain_text("RUNNING")
    expect(row(page, "reports")).to_contain_text("CANCELLED")
    expect(row(page, "orders")).to_contain_text("team=payments")
    expect(row(page, "orders").locator(".badge.st-RUNNING").first).to_be_visible()
    shot(page, "deployments-desktop")

    step("filters: label selector, state, name")
    page.fill("#filter-label", "team=bi")
    expect(row(page, "orders")).to_have_count(0)
    expect(row(page, "reports")).to_have_count(1)
    page.fill("#filter-label", "")
    page.select_option("#filter-state", "RUNNING")
    expect(row(page, "reports")).to_have_count(0)
    expect(row(page, "orders")).to_have_count(1)
    page.select_option("#filter-state", "")
    page.fill("#filter-name", "rep")
    expect(row(page, "orders")).to_have_count(0)
    page.fill("#filter-name", "")

    step("artifacts: the 50 MB limit is checked before uploading; drag and drop uploads")
    page.click("nav >> text=Artifacts")
    drop_files(page, "#dropzone", [{"name": "huge.jar", "size": 51 * 1024 * 1024, "text": None}])
    expect(page.locator("#upload-error")).to_contain_text("50 MB")
    expect(page.locator("#artifacts")).not_to_contain_text("huge.jar")
    with open(JAR, "rb") as f:
        jar_text = f.read().decode("latin-1")
    drop_files(page, "#dropzone", [{"name": "wordcount.jar", "size": 0, "text": jar_text}])
    expect(page.locator("#artifacts tr[data-name='wordcount.jar']")).to_be_visible()
    # The file input too; an existing name is refused by the API and the message shown.
    page.set_input_files("#file", JAR)
    expect(page.locator("#upload-error")).to_contain_text("already exists")
    with open(JAR, "rb") as f:
        page.set_input_files("#file", {"name": "wordcount-v2.jar", "mimeType": "application/java-archive", "buffer": f.read()})
    expect(page.locator("#upload-status")).to_contain_text("wordcount-v2.jar uploaded")
    with page.expect_download() as dl:
        page.click("#artifacts tr[data-name='wordcount.jar'] >> text=Download")
    with open(dl.value.path(), "rb") as got, open(JAR, "rb") as want:
        assert got.read() == want.read(), "downloaded bytes differ from the uploaded ones"
    shot(page, "artifacts-desktop")

    step("create in the Standard view; YAML view keeps what was typed; field errors")
    page.click("nav >> text=Create")
    page.fill("#f-name", "wordcount")
    page.select_option("#f-target", "fake")
    page.select_option("#f-jar", label="wordcount.jar")
    expect(page.locator("#f-jaruri")).to_have_value(re.compile(r"^file://.*/wordcount\.jar$"))
    page.fill("#f-entry", "com.example.WordCount")
    page.fill("#f-args", "--rate 10")
    page.fill("#f-parallelism", "0")
    page.fill("#f-labels", "team=search")
    page.click("#tab-advanced")
    page.select_option("#f-upgrade", "STATELESS")
    page.fill("#f-flink-conf", "execution.checkpointing.interval: 10s")
    shot(page, "create-advanced-desktop")
    page.click("#tab-yaml")
    yaml = page.locator("#yaml")
    expect(yaml).to_have_value(re.compile(r"name: wordcount"))
    expect(yaml).to_have_value(re.compile(r"upgradeStrategy:\n\s+kind: STATELESS"))
    expect(yaml).to_have_value(re.compile(r"execution\.checkpointing\.interval: 10s"))
    expect(yaml).to_have_value(re.compile(r"entryClass: com\.example\.WordCount"))
    yaml.fill(yaml.input_value().replace("--rate 10", "--rate 20"))
    page.click("#tab-advanced")
    expect(page.locator("#f-upgrade")).to_have_value("STATELESS")
    page.click("#tab-standard")
    expect(page.locator("#f-args")).to_have_value("--rate 20")
    expect(page.locator("#f-name")).to_have_value("wordcount")
    shot(page, "create-desktop")
    page.click("#create-submit")
    expect(page.locator("#f-parallelism-error")).to_contain_text("parallelism")
    expect(page.locator("#f-parallelism")).to_have_attribute("aria-invalid", "true")
    page.fill("#f-parallelism", "2")
    page.click("#create-submit")
    expect(page.locator("#state")).to_have_text("CANCELLED")
    deployment_url = page.url
    dep_id = deployment_url.rsplit("/d/", 1)[1].split("/")[0]

    step("start → RUNNING; events newest first; the Flink UI through the proxy")
    page.click("#action-start")
    expect(page.locator("#state")).to_have_text("RUNNING")
    expect(page.locator("#action-suspend")).to_be_enabled()
    shot(page, "deployment-desktop")
    page.click("#tabbtn-events")
    expect(page.locator("#events tbody tr").first).to_be_visible()
    times = page.locator("#events tbody tr td:first-child").all_inner_texts()
    assert times == sorted(times, reverse=True), f"events not newest first: {times}"
    shot(page, "events-desktop")

    step("metrics: SVG charts drawn from the gateway's data; the time range changes them")
    page.click("#tabbtn-metrics")
    charts = page.locator("#charts")
    expect(charts.locator("figure")).to_have_count(7)
    records = charts.locator("figure[data-panel='recordsIn']")
    expect(records.locator("svg path.line")).to_have_count(1)
    expect(records.locator(".value")).to_have_text("1500/s")
    expect(records).to_contain_text("Records in per second")
    heap = charts.locator("figure[data-panel='heap']")
    expect(heap.locator("svg path.line")).to_have_count(2)
    expect(heap.locator(".value")).to_contain_text("JobManager 256.0 MB")
    expect(heap.locator(".value")).to_contain_text("TaskManagers 512.0 MB")
    expect(charts.locator("figure[data-panel='checkpointDuration'] .value")).to_have_text("830 ms")
    expect(charts.locator("figure[data-panel='checkpointFailures']")).to_contain_text("No data")
    line = records.locator("path.line").get_attribute("d")
    assert line.startswith("M") and line.count("L") > 100, line[:80]
    shot(page, "metrics-desktop")
    first_tick = records.locator("text.tick").nth(1).text_content()
    page.select_option("#metrics-range", "21600")
    expect(records.locator("text.tick").nth(1)).not_to_have_text(first_tick)
    page.select_option("#metrics-range", "3600")
    flink = ctx.new_page()
    flink.goto(f"{URL}/flink/default/{dep_id}/")
    expect(flink.locator("h1")).to_have_text("Apache Flink Web Dashboard")
    flink.close()
    page.click("#action-savepoint")
    page.click("#tabbtn-savepoints")
    expect(page.locator("#savepoints tbody tr").first).to_contain_text("USER_REQUEST")
    expect(page.locator("#savepoints tbody tr").first).to_contain_text("COMPLETED")

    page.click("#tabbtn-logs")
    expect(page.locator("#logs-none")).to_contain_text("only local targets")
    step("suspend; change parallelism in the YAML view; a concurrent change is a conflict")
    page.click("#action-suspend")
    expect(page.locator("#state")).to_have_text("SUSPENDED")
    page.click("#tabbtn-configure")
    cfg = page.locator("#config-yaml")
    expect(cfg).to_have_value(re.compile(r"parallelism: 2"))
    expect(cfg).to_have_value(re.compile(r"kind: STATELESS"))
    cfg.fill(cfg.input_value().replace("parallelism: 2", "parallelism: 3"))
    page.click("#config-save")
    expect(page.locator("#config-ok")).to_contain_text("resourceVersion")
    # Someone else changes it while this text is open.
    r = page.request.patch(
        f"{URL}/api/v1/namespaces/default/deployments/{dep_id}",
        headers={"Authorization": f"Bearer {OWNER}"},
        data={"metadata": {"labels": {"team": "search", "changed": "elsewhere"}}},
    )
    assert r.ok, r.text()
    cfg.fill(cfg.input_value().replace("parallelism: 3", "parallelism: 4"))
    page.click("#config-save")
    expect(page.locator("#config-error")).to_contain_text("Conflict")
    expect(cfg).to_have_value(re.compile(r"parallelism: 4"))
    page.click("#tabbtn-overview")
    expect(page.locator("dl.facts")).to_contain_text("3")

    step("configure: a label and a Flink configuration key deleted in the YAML are gone")
    page.click("#tabbtn-configure")
    expect(cfg).to_have_value(re.compile(r"changed: elsewhere"))
    text = cfg.input_value()
    text = re.sub(r"\n *changed: elsewhere", "", text)
    text = re.sub(r"\n *execution\.checkpointing\.interval: 10s", "", text)
    assert "changed" not in text and "checkpointing.interval" not in text, text
    cfg.fill(text)
    page.click("#config-save")
    expect(page.locator("#config-ok")).to_contain_text("resourceVersion")
    page.reload()
    cfg = page.locator("#config-yaml")
    expect(cfg).to_have_value(re.compile(r"team: search"))
    expect(cfg).not_to_have_value(re.compile(r"changed: elsewhere"))
    expect(cfg).not_to_have_value(re.compile(r"checkpointing\.interval"))
    r = page.request.get(f"{URL}/api/v1/namespaces/default/deployments/{dep_id}",
                         headers={"Authorization": f"Bearer {OWNER}"})
    got = r.json()["data"]
    assert got["metadata"]["labels"] == {"team": "search"}, got["metadata"]
    assert "execution.checkpointing.interval" not in got["spec"]["template"]["spec"]["flinkConfiguration"], got["spec"]

    step("clone, then delete the clone with a confirmation")
    page.click("#action-clone")
    expect(page.locator("h1")).to_have_text("Fork of wordcount")
    page.click("#action-delete")
    expect(page.locator("#confirm")).to_be_visible()
    expect(page.locator("#confirm-text")).to_contain_text("Fork of wordcount")
    page.click("#confirm-yes")
    expect(page.locator("#deployments")).to_be_visible()
    expect(row(page, "wordcount")).to_have_count(1)
    expect(row(page, "Fork of wordcount")).to_have_count(0)

    step("create from the YAML view: the API's error is shown there")
    page.click("nav >> text=Create")
    page.click("#tab-yaml")
    page.fill("#yaml", "metadata:\n  name: \"\"\nspec:\n  deploymentTargetName: fake\n")
    page.click("#create-submit")
    expect(page.locator("#yaml-error")).to_contain_text("metadata.name")
    page.click("nav >> text=Deployments")

    step("Chinese: every visible label changes")
    english = page.locator("body").inner_text()
    page.select_option("#lang", "zh")
    expect(page.locator("h1")).to_have_text("作业部署")
    expect(row(page, "orders")).to_contain_text("运行中")
    chinese = page.locator("body").inner_text()
    for label in ["Deployments", "Artifacts", "API tokens", "Running since", "Parallelism",
                  "Desired", "Labels", "Any state", "Sign out", "RUNNING", "CANCELLED"]:
        assert label in english, f"{label!r} not shown in English"
        assert label not in chinese, f"{label!r} still shown in Chinese"
    shot(page, "deployments-zh-desktop")
    page.select_option("#lang", "en")
    expect(page.locator("h1")).to_have_text("Deployments")

    step("time zone: displayed times change")
    since = row(page, "orders").locator("td.time")
    utc = since.inner_text()
    assert utc.endswith("UTC"), utc
    page.click("nav >> text=System")
    expect(page.locator("#version")).to_contain_text(re.compile(r"\d+\.\d+\.\d+"))
    page.select_option("#timezone", "Asia/Shanghai")
    page.click("nav >> text=Deployments")
    expect(since).not_to_have_text(utc)
    shanghai = since.inner_text()
    h_utc = int(utc.split(" ")[1][:2])
    h_sh = int(shanghai.split(" ")[1][:2])
    assert (h_sh - h_utc) % 24 == 8, f"{utc} → {shanghai}"
    page.click("nav >> text=System")
    page.select_option("#timezone", "UTC")

    step("API tokens: the secret is shown once")
    page.click("nav >> text=API tokens")
    page.fill("#token-name", "ci")
    page.select_option("#token-role", "editor")
    page.click("#token-form button[type=submit]")
    expect(page.locator("#token-secret")).to_have_text(re.compile(r"^jm_[0-9a-f]{48}$"))
    expect(page.locator("#tokens tr[data-name='ci']")).to_be_visible()
    shot(page, "tokens-desktop")
    page.click("nav >> text=Deployments")
    expect(page.locator("#token-secret")).to_have_count(0)

    step("job templates: the namespace's deployment defaults edited as YAML")
    page.click("nav >> text=Job templates")
    defaults = page.locator("#defaults-yaml")
    expect(defaults).to_have_value(re.compile(r"parallelism: 1"))
    original = defaults.input_value()
    defaults.fill(original.replace("maxJobCreationAttempts: 4", "maxJobCreationAttempts: lots"))
    page.click("#defaults-save")
    expect(page.locator("#defaults-error")).to_contain_text("maxJobCreationAttempts")
    defaults.fill(original.replace("parallelism: 1", "parallelism: 3"))
    page.click("#defaults-save")
    expect(page.locator("#defaults-ok")).to_contain_text("saved")
    page.reload()
    expect(page.locator("#defaults-yaml")).to_have_value(re.compile(r"parallelism: 3"))
    shot(page, "templates-desktop")
    # Someone else saves meanwhile (a VVP client: no resourceVersion): this save is refused,
    # the text kept; after Reload the other change is there and saving works again.
    r = page.request.patch(f"{URL}/api/v1/namespaces/default/deployment-defaults",
                           headers={"Authorization": f"Bearer {OWNER}"},
                           data={"spec": {"maxSavepointCreationAttempts": 6}})
    assert r.ok, r.text()
    defaults = page.locator("#defaults-yaml")
    defaults.fill(defaults.input_value().replace("parallelism: 3", "parallelism: 5"))
    page.click("#defaults-save")
    expect(page.locator("#defaults-error")).to_contain_text("Conflict")
    expect(page.locator("#defaults-error")).to_contain_text("stale")
    expect(defaults).to_have_value(re.compile(r"parallelism: 5"))
    page.click("#defaults-reload")
    expect(defaults).to_have_value(re.compile(r"maxSavepointCreationAttempts: 6"))
    expect(defaults).to_have_value(re.compile(r"parallelism: 3"))
    defaults.fill(defaults.input_value().replace("parallelism: 3", "parallelism: 5"))
    page.click("#defaults-save")
    expect(page.locator("#defaults-ok")).to_contain_text("saved")
    expect(defaults).to_have_value(re.compile(r"maxSavepointCreationAttempts: 6"))
    expect(defaults).to_have_value(re.compile(r"parallelism: 5"))

    step("deployment targets: list, create (with a field error first), delete")
    page.click("nav >> text=Targets")
    expect(page.locator("#targets tr[data-name='fake']")).to_contain_text("session")
    page.fill("#target-yaml", "metadata:\n  name: staging\nspec:\n  type: session\n")
    page.click("#target-create")
    expect(page.locator("#target-error")).to_contain_text("restUrl")
    page.fill("#target-yaml", "metadata:\n  name: staging\nspec:\n  type: session\n  restUrl: http://127.0.0.1:1\n")
    page.click("#target-create")
    expect(page.locator("#targets tr[data-name='staging']")).to_contain_text("http://127.0.0.1:1")
    shot(page, "targets-desktop")
    page.click("#targets tr[data-name='staging'] >> text=Delete")
    page.click("#confirm-yes")
    expect(page.locator("#targets tr[data-name='staging']")).to_have_count(0)

    step("members: role bindings listed, a member added and removed")
    page.click("nav >> text=Members")
    expect(page.locator("#members tr[data-name='user:alice']")).to_contain_text("editor")
    page.fill("#member-name", "bob")
    page.click("#member-form button[type=submit]")
    expect(page.locator("#member-error")).to_contain_text("user:")
    page.fill("#member-name", "user:bob")
    page.select_option("#member-role", "viewer")
    page.click("#member-form button[type=submit]")
    expect(page.locator("#members tr[data-name='user:bob']")).to_contain_text("viewer")
    shot(page, "members-desktop")
    page.click("#members tr[data-name='user:bob'] >> text=Remove")
    page.click("#confirm-yes")
    expect(page.locator("#members tr[data-name='user:bob']")).to_have_count(0)
    expect(page.locator("#members tr[data-name='user:alice']")).to_have_count(1)
    ctx.close()
    return dep_id


def viewer_journey(browser, dep_id):
    ctx, page = new_page(browser, DESKTOP)
    step("viewer: actions disabled with the reason; the proxy refuses cancellation")
    login(page, VIEWER)
    expect(page.locator("#who")).to_contain_text("viewer")
    page.click("#deployments >> text=orders")
    expect(page.locator("#state")).to_have_text("RUNNING")
    for action in ["start", "suspend", "cancel", "savepoint", "clone", "delete"]:
        expect(page.locator(f"#action-{action}")).to_be_disabled()
    note = page.locator("#role-note")
    expect(note).to_be_visible()
    expect(note).to_contain_text("viewer")
    expect(note).to_contain_text("editor")
    expect(page.locator("#action-start")).to_have_attribute("title", re.compile("editor"))
    shot(page, "viewer-desktop")
    page.click("#tabbtn-configure")
    expect(page.locator("#config-yaml")).to_have_attribute("readonly", "")
    page.click("#tab-standard")
    expect(page.locator("#f-parallelism")).to_be_disabled()
    expect(page.locator("#f-state")).to_have_value("RUNNING")
    expect(page.locator("label[for=f-state]")).to_have_text("Desired")
    expect(page.locator("#config-save")).to_be_disabled()
    page.click("#tabbtn-overview")
    page.click("#tabbtn-logs")
    expect(page.locator("#log-file")).to_contain_text("standalonesession")
    expect(page.locator("#log-file")).to_contain_text("showing the last")
    expect(page.locator("#log")).to_contain_text("line 2999")
    shot(page, "logs-desktop")
    page.click("#tabbtn-overview")
    orders = page.url.rsplit("/d/", 1)[1].split("/")[0]
    r = page.request.get(f"{URL}/flink/default/{orders}/jobs/overview")
    assert r.status == 200, r.status
    r = page.request.patch(f"{URL}/flink/default/{orders}/jobs/0123?mode=cancel")
    assert r.status == 403, r.status
    page.click("nav >> text=Create")
    expect(page.locator("#role-note")).to_contain_text("editor")
    page.click("#top >> text=Targets")
    expect(page.locator("#targets tr[data-name='fake']")).to_be_visible()
    expect(page.locator("#target-form")).to_have_count(0)
    expect(page.locator("#role-note")).to_contain_text("owner")
    expect(page.locator("#targets tr[data-name='fake'] button")).to_be_disabled()
    page.click("#top >> text=Members")
    expect(page.locator("#members tr[data-name='user:alice']")).to_be_visible()
    expect(page.locator("#role-note")).to_contain_text("owner")
    expect(page.locator("#members button").first).to_be_disabled()
    page.click("#top >> text=Job templates")
    expect(page.locator("#defaults-yaml")).to_have_attribute("readonly", "")
    expect(page.locator("#defaults-save")).to_be_disabled()
    ctx.close()


def proxy_user_journey(browser):
    step("trusted auth proxy: the user header signs in without a token")
    ctx = browser.new_context(viewport=DESKTOP, extra_http_headers={"X-Forwarded-User": "alice"})
    page = ctx.new_page()
    page.set_default_timeout(LIVE)
    page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    page.goto(URL + "/")
    expect(page.locator("#deployments")).to_be_visible()
    expect(page.locator("#token")).to_have_count(0)
    expect(page.locator("#who")).to_contain_text("alice")
    expect(page.locator("#who")).to_contain_text("editor")
    expect(row(page, "orders")).to_contain_text("RUNNING")
    ctx.close()


def advanced_journey(browser):
    ctx, page = new_page(browser, DESKTOP)
    step("advanced view: logging profile, loggers and pod options round-trip with the YAML view")
    login(page, OWNER)
    page.click("nav >> text=Create")
    page.fill("#f-name", "pods")
    page.select_option("#f-target", "k8s")
    page.select_option("#f-jar", label="wordcount.jar")
    page.click("#tab-advanced")
    expect(page.locator("#f-name")).to_be_hidden()
    page.select_option("#f-log-profile", "sls")
    page.fill("#f-loggers", ": INFO\norg.apache.kafka: WARN")
    page.fill("#f-pod-labels", "team: search\ntier: gold")
    page.fill("#f-pod-annotations", "prometheus.io/scrape: true")
    page.fill("#f-pod-nodeSelector", "disktype: ssd")
    page.fill("#f-pod-envVars", "1BAD=x")
    page.fill("#f-pod-tolerations", "- key: dedicated\n  operater: Equal\n  value: flink\n  effect: NoSchedule")
    page.fill("#f-pod-volumes", "- name: data\n  emptyDir: {}")
    page.fill("#f-pod-volumeMounts", "- name: data\n  mountPath: /data")
    shot(page, "create-pods-desktop")
    page.click("#tab-yaml")
    yaml = page.locator("#yaml")
    for want in [r"loggingProfile: sls", r"org\.apache\.kafka: WARN", r'"": INFO', r"disktype: ssd",
                 r"prometheus\.io/scrape: \"true\"", r"- key: dedicated\n\s+operater: Equal",
                 r"emptyDir: \{\}", r"mountPath: /data", r"name: \"?1BAD\"?\n\s+value: x"]:
        expect(yaml).to_have_value(re.compile(want))
    yaml.fill(yaml.input_value().replace("disktype: ssd", "disktype: nvme").replace("tier: gold", "tier: silver"))
    page.click("#tab-advanced")
    expect(page.locator("#f-pod-nodeSelector")).to_have_value("disktype: nvme")
    expect(page.locator("#f-pod-labels")).to_have_value("team: search\ntier: silver")
    expect(page.locator("#f-log-profile")).to_have_value("sls")
    expect(page.locator("#f-loggers")).to_have_value(": INFO\norg.apache.kafka: WARN")
    expect(page.locator("#f-pod-tolerations")).to_have_value(re.compile(r"operater: Equal"))
    expect(page.locator("#f-pod-envVars")).to_have_value("1BAD=x")

    step("advanced view: the API's errors appear next to the pod option they name")
    page.fill("#f-pod-affinity", "nodeAffinity: [")
    page.click("#create-submit")
    expect(page.locator("#f-pod-affinity-error")).to_contain_text("line 1")
    page.fill("#f-pod-affinity", "")
    page.click("#create-submit")
    expect(page.locator("#f-pod-envVars-error")).to_contain_text("envVars[0].name")
    expect(page.locator("#f-pod-envVars")).to_have_attribute("aria-invalid", "true")
    page.fill("#f-pod-envVars", "REGION=cn-hangzhou")
    page.click("#create-submit")
    expect(page.locator("#f-pod-tolerations-error")).to_contain_text("operater")
    expect(page.locator("#f-pod-envVars-error")).to_have_text("")
    shot(page, "create-pods-error-desktop")
    page.fill("#f-pod-tolerations", page.locator("#f-pod-tolerations").input_value().replace("operater", "operator"))
    # A native-Kubernetes Flink option the k8s target does not apply: created, with a warning.
    page.fill("#f-flink-conf", "kubernetes.container.image: flink:1.17")
    page.click("#create-submit")
    expect(page.locator("#state")).to_have_text("CANCELLED")

    step("create and configure show the API's warnings, naming the setting with no effect")
    warn = page.locator("#warnings")
    expect(warn).to_be_visible()
    expect(warn).to_contain_text("no effect on the deployment target")
    expect(warn.locator("code")).to_have_text('spec.template.spec.flinkConfiguration["kubernetes.container.image"]')
    expect(warn).to_contain_text('on deployment target "k8s"')
    shot(page, "create-warnings-desktop")
    page.click("#tabbtn-configure")
    expect(page.locator("#warnings")).to_be_hidden()
    cfg = page.locator("#config-yaml")
    for want in [r"loggingProfile: sls", r"disktype: nvme", r"operator: Equal", r"tier: silver",
                 r"name: REGION\n\s+value: cn-hangzhou", r"mountPath: /data", r"kubernetes\.container\.image: flink:1\.17"]:
        expect(cfg).to_have_value(re.compile(want))
    expect(page.locator("#config-warnings")).to_be_hidden()
    cfg.fill(cfg.input_value().replace("disktype: nvme", "disktype: ssd"))
    page.click("#config-save")
    expect(page.locator("#config-ok")).to_contain_text("Saved")
    cw = page.locator("#config-warnings")
    expect(cw).to_be_visible()
    expect(cw.locator("code")).to_have_text('spec.template.spec.flinkConfiguration["kubernetes.container.image"]')
    # Removing the option (the key deleted in YAML, sent as null) clears the warning.
    cfg.fill(re.sub(r"\n\s*kubernetes\.container\.image: flink:1\.17", "", cfg.input_value()))
    page.click("#config-save")
    expect(page.locator("#config-ok")).to_contain_text("Saved")
    expect(cw).to_be_hidden()
    expect(page.locator("#config-warnings")).to_be_hidden()
    expect(cfg).not_to_have_value(re.compile(r"kubernetes\.container\.image"))

    step("configure in the Standard and Advanced views: a cleared option is deleted, errors beside the field")
    page.click("#tab-advanced")
    expect(cfg).to_be_hidden()
    expect(page.locator("#f-pod-nodeSelector")).to_have_value("disktype: ssd")
    expect(page.locator("#f-log-profile")).to_have_value("sls")
    page.fill("#f-pod-nodeSelector", "")
    page.select_option("#f-log-profile", "oss")
    page.fill("#f-pod-envVars", "1BAD=x")
    page.click("#config-save")
    expect(page.locator("#f-pod-envVars-error")).to_contain_text("envVars[0].name")
    page.fill("#f-pod-envVars", "REGION=cn-hangzhou")
    page.click("#tab-standard")
    expect(page.locator("#f-target")).to_have_value("k8s")
    expect(page.locator("#f-jar")).to_have_value(re.compile(r"wordcount\.jar$"))
    page.fill("#f-parallelism", "3")
    shot(page, "configure-standard-desktop")
    page.click("#config-save")
    expect(page.locator("#config-ok")).to_contain_text("resourceVersion")
    page.reload()
    cfg = page.locator("#config-yaml")
    expect(cfg).to_have_value(re.compile(r"parallelism: 3"))
    expect(cfg).to_have_value(re.compile(r"loggingProfile: oss"))
    expect(cfg).to_have_value(re.compile(r"name: REGION"))
    expect(cfg).not_to_have_value(re.compile(r"nodeSelector|disktype"))
    expect(cfg).to_have_value(re.compile(r"tier: silver"))
    ctx.close()


def real_flink_journey(browser):
    """Against flink-suite running the deployment JM_DEPLOYMENT on real Flink."""
    name = os.environ["JM_DEPLOYMENT"]
    job = os.environ["JM_JOB"]
    ctx, page = new_page(browser, DESKTOP)
    step("real Flink: the list shows the deployment RUNNING")
    login(page, OWNER)
    expect(row(page, name)).to_contain_text("RUNNING")
    shot(page, "real-flink-deployments-desktop")
    step("real Flink: the deployment page shows the running job")
    page.fill("#filter-name", name)
    expect(page.locator("#deployments tbody tr")).to_have_count(1)
    row(page, name).locator("a").click()
    expect(page.locator("#state")).to_have_text("RUNNING")
    expect(page.locator("dl.facts")).to_contain_text(job)
    dep_id = page.url.rsplit("/d/", 1)[1].split("/")[0]
    page.click("#tabbtn-jobs")
    expect(page.locator("#jobs tbody tr").first).to_contain_text(job)
    expect(page.locator("#jobs tbody tr").first).to_contain_text("STARTED")
    shot(page, "real-flink-deployment-desktop")

    step("real Flink: the Flink UI link opens Flink's own web UI through the proxy")
    with ctx.expect_page() as opened:
        page.click("#flink-ui")
    flink = opened.value
    flink.wait_for_load_state()
    assert flink.url.startswith(f"{URL}/flink/default/{dep_id}/"), flink.url
    expect(flink).to_have_title(re.compile("Apache Flink"))
    # Flink's dashboard (an Angular app) reads its REST API through the proxy: the version
    # from /config in its header, the running job in its Running Jobs list.
    expect(flink.locator("body")).to_contain_text(re.compile(r"Version:\s*\d+\.\d+"), timeout=30_000)
    overview = flink.request.get(f"{URL}/flink/default/{dep_id}/jobs/overview")
    assert overview.ok, overview.status
    jobs = overview.json()["jobs"]
    running = [j for j in jobs if j["state"] == "RUNNING"]
    assert len(running) == 1, jobs
    flink.click("text=Running Jobs")
    expect(flink.locator("body")).to_contain_text(running[0]["name"], timeout=30_000)
    expect(flink.locator("body")).to_contain_text("RUNNING")
    shot(flink, "real-flink-ui-desktop")
    flink.close()

    step("real Flink: a savepoint triggered from the console completes")
    page.click("#action-savepoint")
    expect(page.locator("#action-error")).to_have_text("")
    page.click("#tabbtn-savepoints")
    first = page.locator("#savepoints tbody tr").first
    expect(first).to_contain_text("USER_REQUEST")
    expect(first).to_contain_text("COMPLETED", timeout=45_000)
    expect(first).to_contain_text(re.compile(r"file:/\S*/savepoint-"))
    shot(page, "real-flink-savepoints-desktop")
    ctx.close()


def phone_journey(browser):
    ctx, page = new_page(browser, PHONE)
    step("phone width: list and deployment page")
    login(page, OWNER)
    expect(row(page, "orders")).to_contain_text("RUNNING")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"page is {width} px wide on a {PHONE['width']} px phone"
    shot(page, "deployments-phone")
    page.click("#deployments >> text=orders")
    expect(page.locator("#state")).to_have_text("RUNNING")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"deployment page is {width} px wide"
    shot(page, "deployment-phone")
    page.click("#tabbtn-metrics")
    expect(page.locator("#charts figure[data-panel='heap'] svg path.line")).to_have_count(2)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"metrics page is {width} px wide"
    shot(page, "metrics-phone")
    page.click("nav >> text=Create")
    expect(page.locator("#f-name")).to_be_visible()
    shot(page, "create-phone")
    ctx.close()


T0 = time.monotonic()
WHICH = sys.argv[1] if len(sys.argv) > 1 else "fake-flink"
with sync_playwright() as p:
    browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
    try:
        if WHICH == "real-flink":
            real_flink_journey(browser)
        elif WHICH == "fake-flink":
            dep = owner_journey(browser)
            advanced_journey(browser)
            viewer_journey(browser, dep)
            proxy_user_journey(browser)
            phone_journey(browser)
        else:
            sys.exit(f"unknown journey {WHICH!r}: use fake-flink or real-flink")
    finally:
        browser.close()
        if errors:
            print("\n".join(errors), file=sys.stderr, flush=True)
if errors:
    sys.exit(1)
step("all journeys passed")
