// Drives airlock's web console in a real headless Chromium (playwright-core, Debian's chromium):
// logs in through the OpenID Provider as $OIDC_TEST_USER, waits for the pending review whose
// statement contains $STATEMENT, checks the statement is shown as text (it carries markup),
// approves it, and logs out. Prints one JSON line with what it saw; exits 0 only if every step
// happened.
//
//   CHROMIUM=/usr/bin/chromium OIDC_TEST_USER=alice STATEMENT='delete from t' node console.mjs URL

import { chromium } from 'playwright-core';

const consoleUrl = process.argv[2];
const user = process.env.OIDC_TEST_USER || 'alice';
const statement = process.env.STATEMENT;
if (!consoleUrl || !statement) {
  console.error('usage: STATEMENT=... node console.mjs CONSOLE_URL');
  process.exit(2);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-background-networking'],
});
const seen = { consoleErrors: [], cspViolations: 0 };
try {
  const page = await browser.newPage();
  page.setDefaultTimeout(20000);
  // Errors on the console's own pages only (the provider's development pages load web fonts).
  const consoleOrigin = new URL(consoleUrl).origin;
  page.on('console', (m) => {
    const where = m.location().url || page.url();
    if (m.type() === 'error' && where.startsWith(consoleOrigin)) seen.consoleErrors.push(`${where}: ${m.text()}`);
  });

  await page.goto(consoleUrl);
  await page.locator('#login').waitFor({ state: 'visible' });
  await page.click('#oidc-login');

  // The provider's own login and consent pages (oidc-provider's development interactions).
  await page.locator('input[name="login"]').fill(user);
  await page.locator('input[name="password"]').fill('any-password');
  await page.locator('button[type="submit"]').click();
  await page.locator('button[type="submit"]').click(); // consent

  // Back on the console, logged in; the token went through the fragment, not the query.
  await page.locator('#who').waitFor({ state: 'visible' });
  seen.who = await page.locator('#who').textContent();
  seen.urlAfterLogin = page.url();
  seen.tokenStored = await page.evaluate(() => (sessionStorage.getItem('airlock-token') || '').slice(0, 7));

  // The held statement appears as a pending review (reload until the gateway has it).
  let row;
  for (let attempt = 0; attempt < 40; attempt += 1) {
    row = page.locator('#reviews-table tbody tr', { hasText: statement });
    if ((await row.count()) === 1) break;
    await page.waitForTimeout(500);
    await page.reload();
    await page.locator('#reviews').waitFor({ state: 'visible' });
  }
  if ((await row.count()) !== 1) throw new Error(`no pending review showing "${statement}"`);
  seen.review = await row.getAttribute('data-review');
  seen.statementCell = await row.locator('td.statement').textContent();
  seen.imgInRow = await row.locator('img').count();
  seen.pwned = await page.evaluate(() => window.pwned === 1);

  await row.locator('button.approve').click();
  await page.locator(`#reviews-table tbody tr[data-review="${seen.review}"]`).waitFor({ state: 'detached' });
  seen.approved = true;

  await page.click('#logout');
  await page.locator('#login').waitFor({ state: 'visible' });
  seen.loggedOutMessage = await page.locator('#message').textContent();
  seen.tokenAfterLogout = await page.evaluate(() => sessionStorage.getItem('airlock-token'));

  console.log(JSON.stringify(seen));
  await browser.close();
  process.exit(0);
} catch (e) {
  console.log(JSON.stringify({ ...seen, error: String(e && e.message ? e.message : e) }));
  await browser.close();
  process.exit(1);
}
