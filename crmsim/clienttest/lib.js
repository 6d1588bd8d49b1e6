// Helpers shared by the client scripts: the emulator's address and
// credentials, its /_sim/ controls, and a runner that names each step.
'use strict';
const fs = require('node:fs');

const base = process.env.CRMSIM_URL;
const credentialsPath = process.env.CRMSIM_CREDENTIALS;
if (!base || !credentialsPath) {
  console.error('CRMSIM_URL and CRMSIM_CREDENTIALS must be set (the Go test TestRealClients sets them)');
  process.exit(2);
}
const credentials = JSON.parse(fs.readFileSync(credentialsPath, 'utf8'));

// sim calls one of the emulator's test controls.
async function sim(method, path, body) {
  const res = await fetch(base + '/_sim' + path, {
    method,
    headers: body ? { 'content-type': 'application/json' } : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  if (res.status >= 300) {
    throw new Error(`${method} /_sim${path}: ${res.status} ${await res.text()}`);
  }
  return res.status === 204 ? null : res.json();
}

// run runs the steps in order and reports each; the first failure ends
// the script with exit code 1.
async function run(name, steps) {
  let passed = 0;
  for (const [step, fn] of steps) {
    try {
      await fn();
      passed++;
      console.log(`ok ${passed} - ${name}: ${step}`);
    } catch (err) {
      console.log(`not ok ${passed + 1} - ${name}: ${step}`);
      console.log(err && err.stack ? err.stack : err);
      if (err && err.body) console.log('body:', JSON.stringify(err.body));
      if (err && err.data) console.log('data:', JSON.stringify(err.data));
      console.log(`${passed} passed, 1 failed`);
      process.exit(1);
    }
  }
  console.log(`${passed} passed, 0 failed`);
}

// rejects runs fn, which must fail, and returns its error.
async function rejects(fn) {
  try {
    await fn();
  } catch (err) {
    return err;
  }
  throw new Error('the call succeeded; an error was expected');
}

module.exports = { base, credentials, sim, run, rejects };
