//! The dashboard's tests, one binary: pages through the router (every page empty, with 500
//! flights, with a flight of 100,000 reports; escaping, CSRF, roles, bad input; the results section), and
//! end-to-end runs in a real headless Chromium driven over WebDriver (chromedriver).
//!
//! The browser tests need Debian's `chromium` and `chromium-driver` (`.ci/run` installs
//! them) and fail when they are missing. Screenshots go to `target/dashboard-screenshots/`.

mod support;
mod webdriver;

mod e2e;
mod pages;
mod results;
mod simulate;
