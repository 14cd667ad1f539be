"""
Debian's headless Chromium, driven with selenium through /usr/bin/chromedriver:
what the web client's tests (tests/test_web_browser.py), the screenshots of
docs/ and benchmarks/bench_web.py look at the page with.

Every browser gets a fresh profile directory and the flags that keep it off
the network (no background fetches, no component updates, no sync, no
QUIC), so it talks only to the loopback servers of the test.  A machine
without Chromium or its driver fails with a message saying so (the tests
never skip).
"""

import os
import shutil
import tempfile
import time

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1200,800"]
#: Seconds a page may take to show what a test waits for: a guard, never a measurement.
GUARD = 20


class MissingBrowser(AssertionError):
    """Chromium or chromedriver is not installed: the test fails, saying so."""


def require_chromium():
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.path.exists(path):
            raise MissingBrowser("%s is missing: install Debian's %s (.ci/run does) to run "
                                 "the web client's browser tests" % (path, package))


class Browser:
    """One headless Chromium with its own profile; ``quit()`` ends it and removes the profile."""

    def __init__(self, size=(1200, 800)):
        require_chromium()
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
        self.profile = tempfile.mkdtemp(prefix="wavebox-chromium-")
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in FLAGS:
            options.add_argument(flag)
        options.add_argument("--window-size=%d,%d" % size)
        options.add_argument("--user-data-dir=" + self.profile)
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        self.driver.set_script_timeout(GUARD)

    def quit(self):
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)

    # -- the page ---------------------------------------------------------------------

    def get(self, url):
        self.driver.get(url)

    def js(self, script, *args):
        return self.driver.execute_script(script, *args)

    def find(self, css):
        from selenium.webdriver.common.by import By
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def find_all(self, css):
        from selenium.webdriver.common.by import By
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def wait(self, predicate, what, guard=GUARD):
        """Poll ``predicate()`` until it is true; fail saying ``what`` did not happen."""
        deadline = time.monotonic() + guard
        last = None
        while True:
            try:
                value = predicate()
            except Exception as e:       # the element is not there yet
                value, last = None, e
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError("the page never showed %s (%s)" % (what, last))
            time.sleep(0.02)

    def wait_js(self, script, what, *args, guard=GUARD):
        return self.wait(lambda: self.js(script, *args), what, guard)

    def log_in(self, base, user, password):
        """The login form of ``base`` (http://HOST:PORT), then the app with its socket open."""
        self.get(base + "/")
        self.find("#login-user").send_keys(user)
        self.find("#login-password").send_keys(password)
        self.find("#login-button").click()
        self.wait_connected()

    def wait_connected(self):
        self.wait_js("return document.body.dataset.socket === 'connected' && "
                     "window.wavebox && window.wavebox.user", "its WebSocket connected")

    def screenshot(self, path):
        self.driver.save_screenshot(path)
