// @hubspot/api-client, unchanged and at its default settings except the
// base path (the emulator's /hubspot prefix), against the HubSpot
// emulator: the private app token from credentials.json, then contacts
// CRUD through basicApi, batchApi and searchApi, archived reads and errors.
'use strict';
const assert = require('node:assert/strict');
const hubspot = require('@hubspot/api-client');
const { version } = require('@hubspot/api-client/package.json');
const { base, credentials, sim, run, rejects } = require('./lib');

const tag = Date.now();
const client = new hubspot.Client({ accessToken: credentials.hubspot.token, basePath: base + '/hubspot' });
const contacts = client.crm.contacts;
const email = (name) => `${name}-${tag}@example.com`;

let id;
const batchIds = [];
run(`@hubspot/api-client ${version}`, [
  ['create (basicApi)', async () => {
    const c = await contacts.basicApi.create({ properties: { email: email('ada'), firstname: 'Ada', lastname: 'Lovelace' }, associations: [] });
    assert.ok(c.id);
    assert.equal(c.properties.email, email('ada'));
    assert.ok(c.createdAt instanceof Date);
    id = c.id;
  }],
  ['read by id and by email', async () => {
    const byID = await contacts.basicApi.getById(id, ['firstname', 'lastname']);
    assert.equal(byID.properties.firstname, 'Ada');
    const byEmail = await contacts.basicApi.getById(email('ada'), ['lastname'], undefined, undefined, false, 'email');
    assert.equal(byEmail.id, id);
    assert.equal(byEmail.properties.lastname, 'Lovelace');
  }],
  ['update (basicApi)', async () => {
    const c = await contacts.basicApi.update(id, { properties: { jobtitle: 'Countess' } });
    assert.equal(c.properties.jobtitle, 'Countess');
  }],
  ['batch upsert by email: new, then existing', async () => {
    const first = await contacts.batchApi.upsert({ inputs: [{ id: email('grace'), idProperty: 'email', properties: { firstname: 'Grace' } }] });
    assert.equal(first.results.length, 1);
    assert.equal(first.results[0]._new ?? first.results[0]['new'], true);
    const second = await contacts.batchApi.upsert({ inputs: [{ id: email('grace'), idProperty: 'email', properties: { lastname: 'Hopper' } }] });
    assert.equal(second.results[0].id, first.results[0].id);
    assert.equal(second.results[0]._new ?? second.results[0]['new'], false);
  }],
  ['batch create, read, update, archive', async () => {
    const created = await contacts.batchApi.create({ inputs: [1, 2, 3].map((i) => ({ properties: { email: email(`many${i}`), lastname: `Many${i}` }, associations: [] })) });
    assert.equal(created.results.length, 3);
    batchIds.push(...created.results.map((c) => c.id));
    const read = await contacts.batchApi.read({ inputs: [1, 2].map((i) => ({ id: email(`many${i}`) })), idProperty: 'email', properties: ['lastname'], propertiesWithHistory: [] }, false);
    assert.deepEqual(read.results.map((c) => c.properties.lastname).sort(), ['Many1', 'Many2']);
    const updated = await contacts.batchApi.update({ inputs: batchIds.map((i) => ({ id: i, properties: { jobtitle: 'Many' } })) });
    assert.equal(updated.results.length, 3);
    assert.ok(updated.results.every((c) => c.properties.jobtitle === 'Many'));
    await contacts.batchApi.archive({ inputs: [{ id: batchIds[2] }] });
    const after = await contacts.batchApi.read({ inputs: batchIds.map((i) => ({ id: i })), properties: ['email'], propertiesWithHistory: [] }, false);
    assert.equal(after.results.length, 2);
    assert.equal(after.numErrors, 1);
  }],
  ['search: filterGroups, sorts, paging', async () => {
    const eq = await contacts.searchApi.doSearch({ filterGroups: [{ filters: [{ propertyName: 'email', operator: 'EQ', value: email('ada') }] }], properties: ['email', 'firstname'], limit: 10, after: '0', sorts: [] });
    assert.equal(eq.total, 1);
    assert.equal(eq.results[0].id, id);
    assert.equal(eq.results[0].properties.firstname, 'Ada');
    const filters = [{ propertyName: 'lastname', operator: 'CONTAINS_TOKEN', value: 'Many*' }, { propertyName: 'email', operator: 'CONTAINS_TOKEN', value: `*${tag}*` }];
    const page1 = await contacts.searchApi.doSearch({ filterGroups: [{ filters }], sorts: ['-lastname'], properties: ['lastname'], limit: 1, after: '0' });
    assert.equal(page1.total, 2);
    assert.equal(page1.results[0].properties.lastname, 'Many2');
    assert.ok(page1.paging && page1.paging.next && page1.paging.next.after);
    const page2 = await contacts.searchApi.doSearch({ filterGroups: [{ filters }], sorts: ['-lastname'], properties: ['lastname'], limit: 1, after: page1.paging.next.after });
    assert.equal(page2.results[0].properties.lastname, 'Many1');
    const either = await contacts.searchApi.doSearch({ filterGroups: [
      { filters: [{ propertyName: 'email', operator: 'EQ', value: email('ada') }] },
      { filters: [{ propertyName: 'email', operator: 'IN', values: [email('grace')] }] },
    ], properties: ['email'], limit: 10, after: '0', sorts: [] });
    assert.equal(either.total, 2);
  }],
  ['list (getPage)', async () => {
    const page = await contacts.basicApi.getPage(2, undefined, ['email']);
    assert.equal(page.results.length, 2);
    assert.ok(page.paging.next.after);
  }],
  ['archive, then archived reads', async () => {
    await contacts.basicApi.archive(id);
    const err = await rejects(() => contacts.basicApi.getById(id));
    assert.equal(err.code, 404);
    const archived = await contacts.basicApi.getById(id, ['email'], undefined, undefined, true);
    assert.equal(archived.archived, true);
    assert.ok(archived.archivedAt instanceof Date);
    const search = await contacts.searchApi.doSearch({ filterGroups: [{ filters: [{ propertyName: 'email', operator: 'EQ', value: email('ada') }] }], limit: 10, after: '0', sorts: [], properties: [] });
    assert.equal(search.total, 0);
  }],
  ['errors: duplicate email is a 409 CONFLICT, a bad property a 400', async () => {
    let err = await rejects(() => contacts.basicApi.create({ properties: { email: email('grace') }, associations: [] }));
    assert.equal(err.code, 409);
    assert.equal(err.body.category, 'CONFLICT');
    assert.match(err.body.message, /Existing ID: \d+/);
    err = await rejects(() => contacts.basicApi.create({ properties: { email: email('new'), no_such_property: 'x' }, associations: [] }));
    assert.equal(err.code, 400);
    assert.equal(err.body.category, 'VALIDATION_ERROR');
  }],
  ['errors: a bad token is a 401, past the quota a 429', async () => {
    const bad = new hubspot.Client({ accessToken: 'pat-na1-wrong', basePath: base + '/hubspot' });
    let err = await rejects(() => bad.crm.contacts.basicApi.getPage(1));
    assert.equal(err.code, 401);
    await sim('PUT', '/hubspot/faults', { rate_limit: 1, rate_window_ms: 60000 });
    try {
      await contacts.basicApi.getPage(1).catch(() => {});
      err = await rejects(() => contacts.basicApi.getPage(1));
      assert.equal(err.code, 429);
      assert.equal(err.body.policyName, 'TEN_SECONDLY_ROLLING');
    } finally {
      await sim('PUT', '/hubspot/faults', {});
    }
  }],
]);
