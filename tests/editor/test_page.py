"""The editor page in a real headless Chromium (Debian's `chromium`), driven by Playwright.

Builds a valid mapping from scratch with the page's controls, watches the validation panel
follow a broken and a fixed rule, verifies, saves, and checks the file. Screenshots of the
main states go to tests/output/editor/.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from emulators.salesforce import PASSWORD, USERNAME
from groups_mapping import validate
from tests.mappings import document, group
from tests.support.editor import OUTPUT_DIR
from tests.support.tap import MAPPING

# Debian's chromium; EDITOR_TEST_CHROMIUM points elsewhere (e.g. to check the skip below).
CHROMIUM = Path(os.environ.get("EDITOR_TEST_CHROMIUM", "/usr/bin/chromium"))
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

if not CHROMIUM.exists():
    pytest.skip(
        f"{CHROMIUM} not found: install Debian's chromium (.ci/run does) to run the browser test",
        allow_module_level=True,
    )

from playwright.sync_api import Browser, Page, expect, sync_playwright  # noqa: E402

expect.set_options(timeout=15_000)  # a loaded 2-core CI machine; a passing check returns at once


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        # The system Chromium only: Playwright never downloads a browser here.
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield chromium
        chromium.close()


def shot(page: Page, name: str, what: str) -> Path:
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUTPUT_DIR / name
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path} ({what})")
    return path


def test_build_break_fix_verify_save(browser: Browser, editor_factory: Any) -> None:
    editor = editor_factory(file_mapping=None)  # no mapping file yet: start from scratch
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.goto(editor.server.url)

    # Empty: the one problem `validate` reports for an empty document; Next and Save disabled.
    expect(page.locator("#problems .message")).to_have_text(
        ["mapping: 'mappings' must be a non-empty list of group mappings"]
    )
    expect(page.locator("#next")).to_be_disabled()
    expect(page.locator("#save")).to_be_disabled()
    expect(page.locator("#source")).to_contain_text("(new file)")
    shot(page, "editor-1-empty.png", "empty editor: no mapping file yet, one problem, Next disabled")

    # Set up a new group mapping with the keyboard: Enter on the button focuses the object picker.
    page.locator("#add-mapping").focus()
    page.keyboard.press("Enter")
    card = page.locator(".card").first
    expect(card.locator(".object")).to_be_focused()
    expect(page.locator("#problems .message")).to_have_text(
        [
            "1: Unknown -> Unknown: group mapping is missing Salesforce object",
            "1: Unknown -> Unknown: group mapping is missing group type",
            "1: Unknown -> Unknown: group mapping is missing a Salesforce field to represent group id",
            "1: Unknown -> Unknown: group mapping has no group properties",
        ]
    )
    object_options = card.locator(".object option").all_inner_texts()
    assert "Subscription (Subscription__c)" in object_options
    assert not any("AggregateResult" in o for o in object_options)  # not queryable
    card.locator(".object").select_option("Account")
    card.locator(".group-type").fill("org id")
    expect(card.locator(".card-title")).to_have_text("1: Account -> org id")
    expect(card.locator(".name-field option[value='Account_Number__c']")).to_have_count(1)

    # A nillable, non-unique group name field warns (the tap's rule); Id does not.
    card.locator(".name-field").select_option("Industry")
    expect(card.locator(".name-warnings li")).to_have_text(
        [
            "group name field 'Industry' can be empty; rows without a value are skipped",
            "group name field 'Industry' is not unique; rows sharing a value update one group",
        ]
    )
    card.locator(".name-field").select_option("Id")
    expect(card.locator(".name-warnings li")).to_have_count(0)

    # Property rows: the name defaults to the field label; one-hop paths are offered.
    for field in ("Name", "Owner.Name", "AnnualRevenue"):
        card.locator(".add-property").click()
        row = card.locator(".prop").last
        expect(row.locator(".prop-field")).to_be_focused()
        row.locator(".prop-field").select_option(field)
    names = card.locator(".prop-name")
    for n, label in enumerate(["Account Name", "Owner Full Name", "Annual Revenue"]):
        expect(names.nth(n)).to_have_value(label)
    expect(page.locator("#problems li")).to_have_count(0)
    expect(page.locator("#panel-summary")).to_contain_text("No problems")
    expect(page.locator("#next")).to_be_enabled()

    # Break a rule: two properties with one name. The panel shows validate's message at once.
    names.nth(1).fill("Account Name")
    broken = document(
        group(
            "Account",
            "org id",
            "Id",
            (("Name", "Account Name"), ("Owner.Name", "Account Name"), ("AnnualRevenue", "Annual Revenue")),
        )
    )
    expect(page.locator("#problems .message")).to_have_text(validate(broken))
    assert validate(broken) == [
        "1: Account -> org id: group property 2: group property 'Account Name' is already mapped by "
        "group property 1 (each group property comes from one field)"
    ]
    expect(page.locator("#next")).to_be_disabled()
    shot(page, "editor-2-problems.png", "a mapping with a problem: two properties named 'Account Name'")
    page.get_by_role("button", name="Show mapping 1").click()  # a problem leads to its mapping
    expect(card.locator(".object")).to_be_focused()

    # Fix it, reorder with the keyboard (focus stays on the moved row), delete a row.
    names.nth(1).fill("owner")
    expect(page.locator("#problems li")).to_have_count(0)
    card.locator(".prop").nth(2).locator(".up").focus()
    page.keyboard.press("Enter")
    expect(card.locator(".prop-field").nth(1)).to_have_value("AnnualRevenue")
    expect(card.locator(".prop").nth(1).locator(".up")).to_be_focused()
    card.locator(".add-property").click()
    card.locator(".prop").last.locator(".prop-field").select_option("Parent.Name")
    expect(card.locator(".prop-name").last).to_have_value("Parent Account Name")
    card.locator(".prop").last.locator(".remove").click()
    expect(card.locator(".prop")).to_have_count(3)
    expect(page.locator("#next")).to_be_enabled()

    # Next: the final verification against the org (the tap's checks); then Save.
    expect(page.locator("#save")).to_be_disabled()
    page.locator("#next").click()
    expect(page.locator("#verify-summary")).to_contain_text(
        "Mapping verified against the org: OK (1 objects", timeout=30_000
    )
    expect(page.locator("#save")).to_be_enabled()
    shot(page, "editor-3-verified.png", "a valid mapping after the final verification; Save enabled")

    page.locator("#save").click()
    expect(page.locator("#notice")).to_have_text(f"Saved to {editor.mapping_file}.")
    expected = document(
        group(
            "Account",
            "org id",
            "Id",
            (("Name", "Account Name"), ("AnnualRevenue", "Annual Revenue"), ("Owner.Name", "owner")),
        )
    )
    assert json.loads(editor.mapping_file.read_text()) == expected
    expect(page.locator("#save")).to_be_disabled()  # saved; a new change needs a new verification
    expect(page.locator("#source")).to_have_text(f"mapping_file: {editor.mapping_file}")  # not "(new file)"

    # A second save keeps the first file as .bak.
    card.locator(".group-type").fill("account")
    page.locator("#next").click()
    expect(page.locator("#save")).to_be_enabled(timeout=30_000)
    page.locator("#save").click()
    expect(page.locator("#notice")).to_contain_text("previous file kept as")
    assert json.loads(Path(f"{editor.mapping_file}.bak").read_text()) == expected
    assert json.loads(editor.mapping_file.read_text())["mappings"][0]["group_type"] == "account"
    assert errors == []
    page.close()


def test_config_buttons_and_look(browser: Browser, editor_factory: Any, tmp_path: Path) -> None:
    editor = editor_factory()  # the tap tests' two-mapping file
    saved = json.loads(editor.mapping_file.read_text())
    context = browser.new_context(
        viewport={"width": 1280, "height": 900}, accept_downloads=True, color_scheme="dark"
    )
    page = context.new_page()
    page.goto(editor.server.url)
    expect(page.locator(".card")).to_have_count(2)
    expect(page.locator("#panel-summary")).to_contain_text("No problems")
    # Group types in use are suggested.
    assert page.locator("#group-types option").evaluate_all("os => os.map(o => o.value)") == [
        "org id",
        "subscription",
    ]

    # Export config: a download of the mapping as shown.
    with page.expect_download() as download:
        page.locator("#export").click()
    assert download.value.suggested_filename == "mapping.json"
    assert json.loads(Path(download.value.path()).read_text()) == saved

    # Copy config: the clipboard holds the same document.
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.locator("#copy").click()
    expect(page.locator("#notice")).to_have_text("Mapping config copied to the clipboard.")
    assert json.loads(page.evaluate("navigator.clipboard.readText()")) == saved

    # Import config: a file with problems is shown, and all its problems listed as validate says,
    # the ones the form cannot show too (an unknown key and its hint).
    bad = document(group("Account", "org id", "Id", (("Name", "n"), ("Name", "m"))))
    bad["mappings"][0]["propertes"] = bad["mappings"][0].pop("properties")
    bad_file = tmp_path / "bad.json"
    bad_file.write_text(json.dumps(bad))
    assert len(validate(bad)) == 2
    assert "unknown key 'propertes' (did you mean 'properties'?)" in validate(bad)[0]
    page.locator("#import-file").set_input_files(str(bad_file))
    expect(page.locator("#notice")).to_have_text(
        "Imported bad.json: 2 problems in the file:\n" + "\n".join(f"- {p}" for p in validate(bad))
    )
    expect(page.locator(".card")).to_have_count(1)
    expect(page.locator("#problems .message")).to_have_text(
        ["1: Account -> org id: group mapping has no group properties"]
    )
    # The import replaced the loaded file's two mappings: the page now has unsaved work, so the
    # next import asks first; dismissed, nothing changes.
    asked: list[str] = []

    def answer(dialog: Any) -> None:
        asked.append(dialog.message)
        dialog.dismiss()

    page.once("dialog", answer)
    page.locator("#import-file").set_input_files(str(editor.mapping_file))
    expect(page.locator("#notice")).to_have_text(f"Import of {editor.mapping_file.name} cancelled.")
    assert asked == [
        f"Import {editor.mapping_file.name}? It replaces the mappings shown, and your unsaved changes are lost."
    ]
    expect(page.locator(".card")).to_have_count(1)
    not_json = tmp_path / "broken.json"
    not_json.write_text('{"version": 1,')
    page.locator("#import-file").set_input_files(str(not_json))
    expect(page.locator("#notice")).to_have_text(
        "broken.json: not valid JSON: Expecting property name enclosed in double quotes at line 1 column 15"
    )
    expect(page.locator(".card")).to_have_count(1)  # a file that is not JSON changes nothing

    # Dark mode follows the system; a narrow window has no horizontal scrolling.
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(13, 17, 23)"
    page.set_viewport_size({"width": 380, "height": 900})
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#import-file").set_input_files(str(editor.mapping_file))
    expect(page.locator(".card")).to_have_count(2)
    expect(page.locator("#panel-summary")).to_contain_text("No problems")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    shot(page, "editor-4-dark-narrow.png", "dark mode in a 380 px wide window, the tap tests' mapping")
    context.close()


def test_cadence_control(browser: Browser, editor_factory: Any, tmp_path: Path) -> None:
    root = tmp_path / "project"
    root.mkdir()
    shutil.copy(Path(__file__).resolve().parents[2] / "meltano.yml", root / "meltano.yml")
    editor = editor_factory(project_root=str(root))
    page = browser.new_page()
    page.goto(editor.server.url)
    expect(page.locator("#cadence")).to_be_enabled()
    expect(page.locator("#cadence")).to_have_value("daily")
    page.locator("#cadence").select_option("hourly")
    expect(page.locator("#notice")).to_contain_text("Sync cadence set to hourly")
    assert "interval: '@hourly'" in (root / "meltano.yml").read_text()
    # The page says what runs the schedule: here nothing but the cron line it shows.
    expect(page.locator("#cadence-runner")).to_contain_text("Nothing runs this schedule by itself")
    expect(page.locator("#cadence-runner code")).to_have_text(
        f"0 * * * * cd {root} && meltano schedule run salesforce-to-amplitude"
    )
    page.close()


def tab_to(page: Page, selector: str, limit: int = 60) -> None:
    """Press Tab until the element matching ``selector`` has the focus (it must be reachable)."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("s => document.activeElement.matches(s)", selector):
            return
    raise AssertionError(f"{selector} is not reachable with Tab")


def arrow_to(page: Page, selector: str, value: str, limit: int = 200) -> None:
    """Move the focused select's choice with the arrow keys until it is ``value``."""
    for _ in range(limit):
        if page.locator(selector).input_value() == value:
            return
        page.keyboard.press("ArrowDown")
    raise AssertionError(f"{value} is not reachable with the arrow keys in {selector}")


def test_keyboard_only(browser: Browser, editor_factory: Any) -> None:
    editor = editor_factory(file_mapping=None)
    page = browser.new_page()
    page.goto(editor.server.url)
    expect(page.locator("#problems li")).to_have_count(1)
    tab_to(page, "#add-mapping")
    page.keyboard.press("Enter")
    expect(page.locator(".card .object")).to_be_focused()
    arrow_to(page, ".card .object", "Account")
    page.keyboard.press("Tab")
    expect(page.locator(".card .group-type")).to_be_focused()
    page.keyboard.type("org id")
    page.keyboard.press("Tab")
    expect(page.locator(".card .name-field")).to_be_focused()
    expect(page.locator(".card .name-field option[value='Id']")).to_have_count(1)  # fields loaded
    arrow_to(page, ".card .name-field", "Id")
    tab_to(page, ".add-property")
    page.keyboard.press("Enter")
    expect(page.locator(".prop-field")).to_be_focused()
    arrow_to(page, ".prop-field", "Industry")
    expect(page.locator(".prop-name")).to_have_value("Industry")
    expect(page.locator("#problems li")).to_have_count(0)
    page.keyboard.press("Shift+Tab")  # back to the top: Next comes before the cards
    tab_to(page, "#next")
    page.keyboard.press("Enter")
    expect(page.locator("#verify-summary")).to_contain_text("Mapping verified against the org: OK")
    tab_to(page, "#save")
    page.keyboard.press("Enter")
    expect(page.locator("#notice")).to_have_text(f"Saved to {editor.mapping_file}.")
    assert json.loads(editor.mapping_file.read_text()) == document(
        group("Account", "org id", "Id", (("Industry", "Industry"),))
    )
    page.close()


def test_network_failures_end_every_pending_status(browser: Browser, editor_factory: Any) -> None:
    # fetch() rejects when the editor is gone or the connection drops; nothing may stay pending.
    editor = editor_factory()
    page = browser.new_page()
    page.route("**/api/mapping", lambda route: route.abort())
    page.goto(editor.server.url)
    expect(page.locator("#source")).to_have_text(
        "Cannot read the mapping: GET /api/mapping: the editor cannot be reached (is it still running?)"
    )
    page.unroute("**/api/mapping")
    page.reload()
    expect(page.locator("#panel-summary")).to_contain_text("No problems")
    page.route("**/api/**", lambda route: route.abort())
    page.locator("#next").click()
    expect(page.locator("#verify-summary")).to_have_text(
        "POST /api/verify: the editor cannot be reached (is it still running?)"
    )
    expect(page.locator("#next")).to_be_enabled()  # the user can try again
    page.locator(".group-type").first.fill("org")
    expect(page.locator("#notice")).to_have_text(
        "POST /api/validate: the editor cannot be reached (is it still running?)"
    )
    page.locator("#cadence").evaluate("s => { s.disabled = false; }")
    page.locator("#cadence").select_option("hourly")
    expect(page.locator("#notice")).to_have_text(
        "PUT /api/schedule: the editor cannot be reached (is it still running?)"
    )
    page.close()


def test_connect_then_preview(browser: Browser, disconnected: Any) -> None:
    """No credentials work.

    Connect to Salesforce logs in (the emulator's login page), the header names the user, the objects load;
    Preview shows the groups the target would send.
    """
    editor, env_file = disconnected
    # The emulator's login page is HTTPS with the test CA, which this Chromium does not know.
    context = browser.new_context(viewport={"width": 1280, "height": 900}, ignore_https_errors=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(editor.server.url)
    expect(page.locator("#connection")).to_contain_text("Not connected to Salesforce")
    expect(page.locator("#connect")).to_be_visible()
    expect(page.locator("#preview")).to_be_disabled()

    page.locator("#connect").click()
    page.wait_for_url("**/services/oauth2/authorize**")
    page.locator("#username").fill(USERNAME)
    page.locator("#password").fill(PASSWORD)
    page.locator("#Login").click()
    # Salesforce -> http://localhost:PORT/oauth/callback -> back to the editor page.
    page.wait_for_url(editor.server.url)
    expect(page.locator("#connection")).to_have_text(
        "Connected to 127.0.0.1 as integration@emulator.example (integration@emulator.example)"
    )
    expect(page.locator("#connect")).to_be_hidden()
    card = page.locator(".card").first
    expect(card.locator(".object")).to_have_value("Account")  # the org's objects and fields loaded
    expect(card.locator(".name-field")).to_have_value("Id")
    expect(card.locator(".prop-field").first.locator("option:checked")).to_have_text("Account Name (Name)")
    assert env_file.exists()
    shot(page, "connected-header.png", "after Connect to Salesforce: the header names the connected user")

    expect(page.locator("#preview")).to_be_enabled()
    page.locator("#preview").click()
    expect(page.locator("#preview-summary")).to_contain_text("as the target would send them")
    expect(page.locator("#preview-results h3")).to_have_count(len(MAPPING["mappings"]))
    expect(page.locator("#preview-results h3").first).to_contain_text("1: Account -> org id: 5 groups")
    expect(page.locator("#preview-results .preview-group").first).to_contain_text("org id")
    shot(page, "preview.png", "Preview: five sample groups per mapping, $set/$unset as the target sends them")
    assert errors == []
    context.close()


def test_save_over_a_changed_file_offers_reload_or_keep(browser: Browser, editor_factory: Any) -> None:
    # Lost update: another writer changes the file after the page read it; Save gets 412.
    editor = editor_factory()
    theirs = document(group("Account", "org id", "Id", (("Name", "theirs"),)))
    page = browser.new_page()
    page.goto(editor.server.url)
    expect(page.locator(".card")).to_have_count(2)
    expect(page.locator("#panel-summary")).to_contain_text("No problems")
    editor.mapping_file.write_text(json.dumps(theirs))  # e.g. `scaffold --write`, a `git pull`
    page.locator(".group-type").first.fill("account")
    page.locator("#next").click()
    expect(page.locator("#save")).to_be_enabled(timeout=30_000)
    page.locator("#save").click()
    expect(page.locator("#conflict")).to_be_visible()
    expect(page.locator("#conflict-text")).to_contain_text("changed since this page read it")
    assert json.loads(editor.mapping_file.read_text()) == theirs
    shot(page, "editor-5-conflict.png", "Save over a file changed since the page read it: reload or keep")

    # Keep my version: the next Save replaces the file, knowingly.
    page.locator("#conflict-keep").click()
    expect(page.locator("#conflict")).to_be_hidden()
    expect(page.locator("#save")).to_be_enabled()
    page.locator("#save").click()
    expect(page.locator("#notice")).to_contain_text("previous file kept as")
    assert json.loads(editor.mapping_file.read_text())["mappings"][0]["group_type"] == "account"
    assert json.loads(Path(f"{editor.mapping_file}.bak").read_text()) == theirs

    # Changed again elsewhere: this time reload, which shows the file as it is now.
    editor.mapping_file.write_text(json.dumps(theirs))
    page.locator(".group-type").first.fill("org")
    page.locator("#next").click()
    expect(page.locator("#save")).to_be_enabled(timeout=30_000)
    page.locator("#save").click()
    page.locator("#conflict-reload").click()
    expect(page.locator(".card")).to_have_count(1)
    expect(page.locator(".prop-name")).to_have_value("theirs")
    expect(page.locator("#notice")).to_contain_text("your changes were discarded")
    assert json.loads(editor.mapping_file.read_text()) == theirs
    page.close()


def test_delete_mapping_asks_first(browser: Browser, editor_factory: Any) -> None:
    editor = editor_factory()
    page = browser.new_page()
    page.goto(editor.server.url)
    expect(page.locator(".card")).to_have_count(2)
    asked: list[str] = []

    def answer(dialog: Any) -> None:
        asked.append(dialog.message)
        dialog.dismiss()

    page.once("dialog", answer)
    page.locator(".delete-mapping").first.click()
    expect(page.locator(".card")).to_have_count(2)  # dismissed: nothing deleted
    assert asked == [
        "Delete mapping 1: Account -> org id and its 9 group properties? (The file changes only when you save.)"
    ]
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator(".delete-mapping").first.click()
    expect(page.locator(".card")).to_have_count(1)
    # An empty mapping just added goes without asking.
    page.locator("#add-mapping").click()
    expect(page.locator(".card")).to_have_count(2)
    page.locator(".delete-mapping").last.click()
    expect(page.locator(".card")).to_have_count(1)
    page.close()


def test_the_launcher_file_takes_the_browser_to_the_editor(browser: Browser, editor_factory: Any) -> None:
    # What the browser is opened on (no token in the launcher's argv): a private redirect file.
    from tap_salesforce_groups.editor import launcher_file

    editor = editor_factory()
    launcher = launcher_file(editor.server.url)
    try:
        page = browser.new_page()
        page.goto(launcher.as_uri())
        page.wait_for_url(editor.server.url)
        expect(page.locator(".card")).to_have_count(2)
        expect(page.locator("#panel-summary")).to_contain_text("No problems")
        page.close()
    finally:
        launcher.unlink()


def test_merge_after_a_conflict_keeps_both_sides_changes(browser: Browser, editor_factory: Any) -> None:
    # The page changes the Account mapping while someone else adds a property to Subscription__c:
    # Merge takes each mapping from the side that changed it.
    editor = editor_factory()
    original = json.loads(editor.mapping_file.read_text())
    page = browser.new_page()
    page.goto(editor.server.url)
    expect(page.locator(".card")).to_have_count(2)
    theirs = json.loads(json.dumps(original))
    theirs["mappings"][1]["properties"].append({"field": "Name", "property": "subscription name"})
    editor.mapping_file.write_text(json.dumps(theirs))
    page.locator(".card").first.locator(".group-type").fill("account")
    page.locator("#next").click()
    expect(page.locator("#save")).to_be_enabled(timeout=30_000)
    page.locator("#save").click()
    page.locator("#conflict-merge").click()
    expect(page.locator("#notice")).to_have_text(
        f"Merged with {editor.mapping_file} as it is now; verify and save to write the result.\n"
        "From the file: Subscription__c -> subscription."
    )
    expect(page.locator(".card-title")).to_have_text(
        ["1: Account -> account", "2: Subscription__c -> subscription"]
    )
    expect(page.locator(".card").nth(1).locator(".prop-name").last).to_have_value("subscription name")
    expect(page.locator("#save")).to_be_disabled()  # the merged mapping is verified before it is saved
    page.locator("#next").click()
    expect(page.locator("#save")).to_be_enabled(timeout=30_000)
    page.locator("#save").click()
    expect(page.locator("#notice")).to_contain_text("Saved to")
    saved = json.loads(editor.mapping_file.read_text())
    assert saved["mappings"][0]["group_type"] == "account"
    assert saved["mappings"][1] == theirs["mappings"][1]

    # Both sides change the same mapping: the page's version is kept, and said so.
    theirs = json.loads(json.dumps(saved))
    theirs["mappings"][0]["group_type"] = "org"
    editor.mapping_file.write_text(json.dumps(theirs))
    page.locator(".card").first.locator(".group-type").fill("company")
    page.locator("#next").click()
    expect(page.locator("#save")).to_be_enabled(timeout=30_000)
    page.locator("#save").click()
    page.locator("#conflict-merge").click()
    expect(page.locator("#notice")).to_contain_text("Changed on both sides, yours kept: Account -> company.")
    expect(page.locator(".card-title").first).to_have_text("1: Account -> company")
    page.close()


def test_an_answer_of_an_unexpected_shape_ends_the_waiting_text(
    browser: Browser, editor_factory: Any
) -> None:
    # A proxy or an older editor answering 200 with another body: the page says it failed.
    editor = editor_factory()
    page = browser.new_page()
    page.goto(editor.server.url)
    expect(page.locator("#panel-summary")).to_contain_text("No problems")
    page.route(
        "**/api/verify", lambda route: route.fulfill(status=200, body="{}", content_type="application/json")
    )
    page.locator("#next").click()
    expect(page.locator("#verify-summary")).to_contain_text("Failed: ")
    expect(page.locator("#next")).to_be_enabled()
    expect(page.locator("#save")).to_be_disabled()
    page.close()
