// jsforce, unchanged, against the Salesforce emulator: logs in with the
// JWT bearer flow (conn.authorize with the assertion, as jsforce documents
// for server-to-server use) from the sandbox credentials in
// credentials.json, then CRUD, collections, SOQL and errors, at jsforce's
// default API version and at a recent one.
'use strict';
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const jsforce = require('jsforce');
const { base, credentials, sim, run, rejects } = require('./lib');

const creds = credentials.salesforce;
const ext = 'RecordSync_Id__c';

function b64url(v) {
  return Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');
}

// assertion signs the JWT bearer assertion with the sandbox private key.
function assertion() {
  const head = b64url({ alg: 'RS256' });
  const claims = b64url({ iss: creds.consumer_key, sub: creds.username, aud: creds.audience, exp: Math.floor(Date.now() / 1000) + 120 });
  const sig = crypto.sign('RSA-SHA256', Buffer.from(`${head}.${claims}`), creds.private_key).toString('base64url');
  return `${head}.${claims}.${sig}`;
}

async function suite(version) {
  const label = version ? `v${version}` : `default version v${new jsforce.Connection({}).version}`;
  const tag = `${version || 'default'}-${Date.now()}`;
  const conn = new jsforce.Connection({ loginUrl: base + '/salesforce', ...(version ? { version } : {}) });
  const Contact = () => conn.sobject('Contact');
  let id;
  const many = [];
  await run(`jsforce ${jsforce.VERSION} ${label}`, [
    ['login (JWT bearer, conn.authorize)', async () => {
      const user = await conn.authorize({ grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer', assertion: assertion() });
      assert.ok(conn.accessToken);
      assert.ok(conn.instanceUrl.endsWith('/salesforce'));
      assert.ok(user.organizationId);
      const me = await conn.identity();
      assert.equal(me.username, creds.username);
    }],
    ['versions list the one in use', async () => {
      const versions = await conn.request('/services/data/');
      assert.ok(versions.some((v) => v.version === conn.version), `${conn.version} not in ${JSON.stringify(versions.map((v) => v.version))}`);
      assert.equal(versions[0].version, '31.0');
    }],
    ['describeGlobal and describe', async () => {
      const g = await conn.describeGlobal();
      assert.ok(g.sobjects.some((s) => s.name === 'Contact'));
      const d = await Contact().describe();
      const f = d.fields.find((x) => x.name === ext);
      assert.ok(f && f.externalId);
    }],
    ['create', async () => {
      const r = await Contact().create({ FirstName: 'Ada', LastName: 'Lovelace', Email: `ada-${tag}@example.com`, [ext]: `ada-${tag}` });
      assert.equal(r.success, true);
      id = r.id;
    }],
    ['retrieve by id, all fields and some', async () => {
      const r = await Contact().retrieve(id);
      assert.equal(r.Id, id);
      assert.equal(r.LastName, 'Lovelace');
      const some = await conn.retrieve('Contact', id, { fields: ['Email'] });
      assert.equal(some.Email, `ada-${tag}@example.com`);
      assert.equal(some.LastName, undefined);
    }],
    ['retrieve by external id', async () => {
      const r = await conn.request(`/sobjects/Contact/${ext}/ada-${tag}`);
      assert.equal(r.Id, id);
      const found = await Contact().findOne({ [ext]: `ada-${tag}` }, ['Id', 'Email']);
      assert.equal(found.Id, id);
    }],
    ['update', async () => {
      const r = await Contact().update({ Id: id, Title: 'Countess' });
      assert.equal(r.success, true);
      assert.equal((await Contact().retrieve(id)).Title, 'Countess');
    }],
    ['upsert by external id: create, then update', async () => {
      const first = await Contact().upsert({ [ext]: `grace-${tag}`, LastName: 'Hopper' }, ext);
      assert.equal(first.success, true);
      assert.equal(first.created, true);
      const second = await Contact().upsert({ [ext]: `grace-${tag}`, LastName: 'Hopper', Title: 'Rear Admiral' }, ext);
      assert.equal(second.success, true);
      assert.notEqual(second.created, true);
      const r = await conn.request(`/sobjects/Contact/${ext}/grace-${tag}`);
      assert.equal(r.Title, 'Rear Admiral');
    }],
    ['collections: create, retrieve, update, upsert, delete', async () => {
      const recs = [1, 2, 3].map((i) => ({ LastName: `Many${i}`, Email: `many${i}-${tag}@example.com`, [ext]: `many${i}-${tag}` }));
      const created = await Contact().create(recs);
      assert.equal(created.length, 3);
      assert.ok(created.every((r) => r.success));
      many.push(...created.map((r) => r.id));
      const read = await Contact().retrieve(many, { fields: ['LastName'] });
      assert.deepEqual(read.map((r) => r.LastName), ['Many1', 'Many2', 'Many3']);
      const all = await Contact().retrieve(many); // fields from describe, as jsforce does
      assert.equal(all[0].Email, `many1-${tag}@example.com`);
      const updated = await Contact().update(many.map((Id) => ({ Id, Title: 'Many' })));
      assert.ok(updated.every((r) => r.success));
      const ups = await Contact().upsert([{ [ext]: `many1-${tag}`, LastName: 'Many1b' }, { [ext]: `many4-${tag}`, LastName: 'Many4' }], ext);
      assert.deepEqual(ups.map((r) => [r.success, r.created]), [[true, false], [true, true]]);
      many.push(ups[1].id);
      const gone = await Contact().destroy(many.slice(2));
      assert.ok(gone.every((r) => r.success));
    }],
    ['allOrNone rolls the whole collection back', async () => {
      const res = await Contact().create([{ LastName: 'Kept', [ext]: `aon-${tag}` }, { FirstName: 'NoLastName' }], { allOrNone: true });
      assert.deepEqual(res.map((r) => r.success), [false, false]);
      assert.equal(res[0].errors[0].statusCode, 'ALL_OR_NONE_OPERATION_ROLLED_BACK');
      assert.equal(res[1].errors[0].statusCode, 'REQUIRED_FIELD_MISSING');
      const n = await Contact().count({ [ext]: `aon-${tag}` });
      assert.equal(n, 0);
    }],
    ['query: =, IN, LIMIT', async () => {
      const eq = await conn.query(`SELECT Id, Email FROM Contact WHERE Email = 'ada-${tag}@example.com'`);
      assert.equal(eq.totalSize, 1);
      assert.equal(eq.records[0].Id, id);
      const inq = await conn.query(`SELECT Id, ${ext} FROM Contact WHERE ${ext} IN ('many1-${tag}', 'many2-${tag}', 'nobody') ORDER BY ${ext} DESC`);
      assert.deepEqual(inq.records.map((r) => r[ext]), [`many2-${tag}`, `many1-${tag}`]);
      const lim = await conn.query(`SELECT Id FROM Contact WHERE LastName LIKE 'Many%' LIMIT 1`);
      assert.equal(lim.records.length, 1);
    }],
    ['query paging with nextRecordsUrl (autoFetch)', async () => {
      for (let b = 0; b < 2; b++) {
        const recs = Array.from({ length: 150 }, (_, i) => ({ LastName: 'Page', [ext]: `page-${b}-${i}-${tag}` }));
        const res = await Contact().create(recs);
        assert.ok(res.every((r) => r.success));
      }
      const first = await conn.query(`SELECT Id FROM Contact WHERE LastName = 'Page' AND ${ext} LIKE '%${tag}'`, { headers: { 'Sforce-Query-Options': 'batchSize=200' } });
      assert.equal(first.totalSize, 300);
      assert.equal(first.records.length, 200);
      assert.equal(first.done, false);
      assert.ok(first.nextRecordsUrl);
      const rest = await conn.queryMore(first.nextRecordsUrl);
      assert.equal(rest.records.length, 100);
      assert.equal(rest.done, true);
      const all = await conn.query(`SELECT Id FROM Contact WHERE LastName = 'Page' AND ${ext} LIKE '%${tag}'`)
        .run({ autoFetch: true, maxFetch: 1000, headers: { 'Sforce-Query-Options': 'batchSize=200' } });
      assert.equal(all.records.length, 300);
    }],
    ['delete, then reads say ENTITY_IS_DELETED and queryAll finds it', async () => {
      const r = await Contact().destroy(id);
      assert.equal(r.success, true);
      const err = await rejects(() => Contact().retrieve(id));
      assert.equal(err.errorCode, 'ENTITY_IS_DELETED');
      const live = await conn.query(`SELECT Id FROM Contact WHERE Id = '${id}'`);
      assert.equal(live.totalSize, 0);
      const all = await conn.query(`SELECT Id, IsDeleted FROM Contact WHERE Id = '${id}'`).scanAll(true).run();
      assert.equal(all.totalSize, 1);
      assert.equal(all.records[0].IsDeleted, true);
    }],
    ['errors: REQUIRED_FIELD_MISSING, DUPLICATE_VALUE, NOT_FOUND, MALFORMED_QUERY', async () => {
      let err = await rejects(() => Contact().create({ FirstName: 'Nameless' }));
      assert.equal(err.errorCode, 'REQUIRED_FIELD_MISSING');
      assert.deepEqual(err.data.fields, ['LastName']);
      err = await rejects(() => Contact().create({ LastName: 'Twin', [ext]: `grace-${tag}` }));
      assert.equal(err.errorCode, 'DUPLICATE_VALUE');
      err = await rejects(() => Contact().retrieve('003sim999999999AAA'));
      assert.equal(err.errorCode, 'NOT_FOUND');
      err = await rejects(() => conn.query('SELECT FROM Contact'));
      assert.equal(err.errorCode, 'MALFORMED_QUERY');
    }],
    ['errors: INVALID_SESSION_ID', async () => {
      const bad = new jsforce.Connection({ instanceUrl: conn.instanceUrl, accessToken: 'not-a-session', ...(version ? { version } : {}) });
      const err = await rejects(() => bad.sobject('Contact').retrieve(many[0]));
      assert.equal(err.errorCode, 'INVALID_SESSION_ID');
    }],
    ['limits, and REQUEST_LIMIT_EXCEEDED past the quota', async () => {
      const limits = await conn.limits();
      assert.ok(limits.DailyApiRequests.Max > 0);
      await sim('PUT', '/salesforce/faults', { rate_limit: 1, rate_window_ms: 60000 });
      try {
        await conn.query('SELECT Id FROM Contact LIMIT 1').catch(() => {});
        const err = await rejects(() => conn.query('SELECT Id FROM Contact LIMIT 1'));
        assert.equal(err.errorCode, 'REQUEST_LIMIT_EXCEEDED');
      } finally {
        await sim('PUT', '/salesforce/faults', {});
      }
    }],
  ]);
}

(async () => {
  await suite(undefined);
  await suite('62.0');
})().catch((err) => {
  console.error(err);
  process.exit(1);
});
