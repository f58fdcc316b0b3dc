import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { xmlToResource } from './from-xml.js';
import { resourceToXml } from './to-xml.js';
import { XmlConversionError } from './xml-common.js';

const EXAMPLES = resolve(process.cwd(), '../shared/data/fhir-examples');

describe('FHIR XML ⇄ JSON on the official R4 examples', () => {
  it('every example written as XML reads back as the same JSON', () => {
    const files = readdirSync(EXAMPLES).filter((f) => f.endsWith('.json'));
    expect(files.length).toBeGreaterThan(600);
    const differ: string[] = [];
    for (const file of files) {
      const json = JSON.parse(readFileSync(join(EXAMPLES, file), 'utf8')) as Record<string, unknown>;
      const xml = resourceToXml(json);
      expect(xml.startsWith(`<${String(json.resourceType)} xmlns="http://hl7.org/fhir"`), file).toBe(true);
      try {
        expect(xmlToResource(xml)).toEqual(json);
      } catch {
        differ.push(file);
      }
    }
    expect(differ).toEqual([]);
  });
});

/** The shape of https://hl7.org/fhir/R4/xml.html: elements, value attributes, a primitive's extension, a contained resource, the narrative. */
const PATIENT_XML = `<?xml version="1.0" encoding="UTF-8"?>
<!-- a comment is not content -->
<Patient xmlns="http://hl7.org/fhir" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:schemaLocation="http://hl7.org/fhir ../../schema/patient.xsd">
  <id value="xml-1"/>
  <text>
    <status value="generated"/>
    <div xmlns="http://www.w3.org/1999/xhtml"><p>Peter &amp; <b>James</b> &lt;Chalmers&gt;</p><br/></div>
  </text>
  <contained>
    <Organization>
      <id value="org1"/>
      <name value="Gastro &quot;Clinic&quot;"/>
    </Organization>
  </contained>
  <extension url="http://example.org/fhir/StructureDefinition/eye-colour">
    <valueCode value="blue"/>
  </extension>
  <identifier id="mrn">
    <use value="usual"/>
    <system value="urn:oid:1.2.36.146.595.217.0.1"/>
    <value value="12345"/>
  </identifier>
  <active value="true"/>
  <name>
    <family value="Chalmers"/>
    <given value="Peter"/>
    <given id="g2">
      <extension url="http://hl7.org/fhir/StructureDefinition/iso21090-EN-qualifier">
        <valueCode value="CL"/>
      </extension>
    </given>
    <given value="James"/>
  </name>
  <gender value="male"/>
  <birthDate value="1974-12-25">
    <extension url="http://hl7.org/fhir/StructureDefinition/patient-birthTime">
      <valueDateTime value="1974-12-25T14:35:45-05:00"/>
    </extension>
  </birthDate>
  <multipleBirthInteger value="2"/>
  <managingOrganization>
    <reference value="#org1"/>
  </managingOrganization>
</Patient>`;

describe('FHIR XML → JSON', () => {
  it('reads values, a primitive’s id and extensions, repeating primitives, contained resources and the narrative', () => {
    expect(xmlToResource(PATIENT_XML)).toEqual({
      resourceType: 'Patient',
      id: 'xml-1',
      text: { status: 'generated', div: '<div xmlns="http://www.w3.org/1999/xhtml"><p>Peter &amp; <b>James</b> &lt;Chalmers&gt;</p><br/></div>' },
      contained: [{ resourceType: 'Organization', id: 'org1', name: 'Gastro "Clinic"' }],
      extension: [{ url: 'http://example.org/fhir/StructureDefinition/eye-colour', valueCode: 'blue' }],
      identifier: [{ id: 'mrn', use: 'usual', system: 'urn:oid:1.2.36.146.595.217.0.1', value: '12345' }],
      active: true,
      name: [
        {
          family: 'Chalmers',
          given: ['Peter', null, 'James'],
          _given: [null, { id: 'g2', extension: [{ url: 'http://hl7.org/fhir/StructureDefinition/iso21090-EN-qualifier', valueCode: 'CL' }] }, null],
        },
      ],
      gender: 'male',
      birthDate: '1974-12-25',
      _birthDate: { extension: [{ url: 'http://hl7.org/fhir/StructureDefinition/patient-birthTime', valueDateTime: '1974-12-25T14:35:45-05:00' }] },
      multipleBirthInteger: 2,
      managingOrganization: { reference: '#org1' },
    });
  });

  it('types numbers and booleans by their definitions, and keeps a narrative that leans on outer namespace prefixes', () => {
    const obs = xmlToResource(
      `<Observation xmlns="http://hl7.org/fhir" xmlns:h="http://www.w3.org/1999/xhtml"><text><status value="generated"/><h:div><h:p>7.20 mmol/L</h:p></h:div></text><status value="final"/><code><text value="glucose"/></code><valueQuantity><value value="7.20"/><unit value="mmol/L"/></valueQuantity><referenceRange><low><value value="-1e2"/></low></referenceRange></Observation>`,
    );
    expect(obs).toMatchObject({
      text: { div: '<div xmlns="http://www.w3.org/1999/xhtml"><p>7.20 mmol/L</p></div>' },
      valueQuantity: { value: 7.2, unit: 'mmol/L' },
      referenceRange: [{ low: { value: -100 } }],
    });
  });

  it('reads Bundles with their entries’ resources', () => {
    const bundle = xmlToResource(
      `<Bundle xmlns="http://hl7.org/fhir"><type value="transaction"/><entry><fullUrl value="urn:uuid:1"/><resource><Patient><active value="false"/></Patient></resource><request><method value="POST"/><url value="Patient"/></request></entry></Bundle>`,
    );
    expect(bundle).toEqual({
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [{ fullUrl: 'urn:uuid:1', resource: { resourceType: 'Patient', active: false }, request: { method: 'POST', url: 'Patient' } }],
    });
  });

  const refused: Array<[string, string, RegExp]> = [
    ['a DOCTYPE with an external entity (XXE)', `<?xml version="1.0"?><!DOCTYPE Patient [<!ENTITY x SYSTEM "file:///etc/passwd">]><Patient xmlns="http://hl7.org/fhir"><id value="&x;"/></Patient>`, /DOCTYPE/],
    ['entity expansion (billion laughs)', `<!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><Patient xmlns="http://hl7.org/fhir"><id value="&b;"/></Patient>`, /DOCTYPE/],
    ['malformed XML', `<Patient xmlns="http://hl7.org/fhir"><active value="true"></Patient>`, /not well-formed/],
    ['an undefined entity', `<Patient xmlns="http://hl7.org/fhir"><gender value="&nbsp;"/></Patient>`, /not well-formed/],
    ['no namespace', `<Patient><active value="true"/></Patient>`, /not in the FHIR namespace/],
    ['an unknown resource type', `<Patient2 xmlns="http://hl7.org/fhir"/>`, /not a FHIR R4 resource type/],
    ['a datatype as the root', `<HumanName xmlns="http://hl7.org/fhir"/>`, /not a FHIR R4 resource type/],
    ['an unknown element', `<Patient xmlns="http://hl7.org/fhir"><colour value="blue"/></Patient>`, /Patient\.colour .*not an element/],
    ['an element of another namespace', `<Patient xmlns="http://hl7.org/fhir"><x:active xmlns:x="urn:x" value="true"/></Patient>`, /not an element FHIR R4 defines here \(namespace urn:x/],
    ['text in an element', `<Patient xmlns="http://hl7.org/fhir"><gender>male</gender></Patient>`, /holds text/],
    ['an attribute FHIR does not define', `<Patient xmlns="http://hl7.org/fhir"><gender value="male" code="m"/></Patient>`, /attribute code/],
    ['Element.id as an element', `<Patient xmlns="http://hl7.org/fhir"><name><id value="x"/></name></Patient>`, /Patient\.name\.id .*not an element/],
    ['a single element repeated', `<Patient xmlns="http://hl7.org/fhir"><gender value="male"/><gender value="female"/></Patient>`, /occurs more than once/],
    ['a boolean that is not one', `<Patient xmlns="http://hl7.org/fhir"><active value="yes"/></Patient>`, /true or false/],
    ['an integer that is not one', `<Patient xmlns="http://hl7.org/fhir"><multipleBirthInteger value="2.5"/></Patient>`, /integer/],
    ['a decimal that is not one', `<Observation xmlns="http://hl7.org/fhir"><valueQuantity><value value="1,5"/></valueQuantity></Observation>`, /decimal/],
    ['an element with no value', `<Patient xmlns="http://hl7.org/fhir"><gender/></Patient>`, /no value attribute/],
    ['a narrative that is not XHTML', `<Patient xmlns="http://hl7.org/fhir"><text><status value="generated"/><div value="x"/></text></Patient>`, /XHTML/],
    ['another encoding than UTF-8', `<?xml version="1.0" encoding="ISO-8859-1"?><Patient xmlns="http://hl7.org/fhir"/>`, /UTF-8/],
    ['two resources in one resource element', `<Bundle xmlns="http://hl7.org/fhir"><entry><resource><Patient/><Patient/></resource></entry></Bundle>`, /exactly one resource/],
    ['nesting past the limit', `<Patient xmlns="http://hl7.org/fhir">${'<extension url="u">'.repeat(200)}${'</extension>'.repeat(200)}</Patient>`, /nests deeper/],
    ['no element at all', `<?xml version="1.0"?>`, /not well-formed|no XML element/],
  ];
  for (const [what, xml, message] of refused) {
    it(`refuses ${what}, naming the problem`, () => {
      let error: unknown;
      try {
        xmlToResource(xml);
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(XmlConversionError);
      expect((error as Error).message).toMatch(message);
    });
  }
});

describe('JSON → FHIR XML', () => {
  it('writes elements in definition order whatever the JSON order, Extension.url and ids as attributes', () => {
    const xml = resourceToXml({
      gender: 'female',
      name: [{ given: ['Ann'], family: 'Lee', id: 'n1' }],
      resourceType: 'Patient',
      extension: [{ valueString: 'x', url: 'http://e.org/a' }],
      id: 'p1',
    });
    expect(xml).toBe(
      '<Patient xmlns="http://hl7.org/fhir"><id value="p1"/><extension url="http://e.org/a"><valueString value="x"/></extension><name id="n1"><family value="Lee"/><given value="Ann"/></name><gender value="female"/></Patient>',
    );
  });

  it('escapes markup and keeps line breaks and tabs in attribute values', () => {
    const note = 'a < b & "c"\n\tline two\r\n';
    const xml = resourceToXml({ resourceType: 'Observation', status: 'final', code: { text: note } });
    expect(xml).toContain('value="a &lt; b &amp; &quot;c&quot;&#10;&#9;line two&#13;&#10;"');
    expect((xmlToResource(xml) as { code: { text: string } }).code.text).toBe(note);
  });

  it('any string survives the round trip', () => {
    // XML 1.0 characters only (JSON may hold others, which FHIR strings may not either).
    const xmlChar = fc.oneof(fc.constantFrom('\t', '\n', '\r', '&', '<', '>', '"', "'", ']]>'), fc.string({ unit: 'grapheme' }));
    fc.assert(
      fc.property(fc.array(xmlChar, { maxLength: 20 }), (parts) => {
        const text = parts.join('') || 'x';
        const back = xmlToResource(resourceToXml({ resourceType: 'Basic', code: { text } })) as { code: { text: string } };
        expect(back.code.text).toBe(text);
      }),
      { numRuns: 300 },
    );
  });

  it('refuses what XML cannot say: an element R4 does not define', () => {
    expect(() => resourceToXml({ resourceType: 'Patient', colour: 'blue' })).toThrow(/Patient\.colour is not an element/);
    expect(() => resourceToXml({ resourceType: 'Nope' })).toThrow(/not a FHIR R4 resource/);
    for (const text of ['a\u0001b', 'x\uFFFF', 'lone \uD800 surrogate']) {
      expect(() => resourceToXml({ resourceType: 'Basic', code: { text } })).toThrow(/XML 1.0 cannot carry/);
    }
    expect(resourceToXml({ resourceType: 'Basic', code: { text: 'emoji \uD83D\uDE00' } })).toContain('emoji \uD83D\uDE00');
  });

  it('declares the XHTML namespace on a narrative stored without it', () => {
    const xml = resourceToXml({ resourceType: 'Patient', text: { status: 'generated', div: '<div><b>x</b></div>' } });
    expect(xml).toContain('<div xmlns="http://www.w3.org/1999/xhtml"><b>x</b></div>');
    expect((xmlToResource(xml) as { text: { div: string } }).text.div).toBe('<div xmlns="http://www.w3.org/1999/xhtml"><b>x</b></div>');
  });

  it('pretty-prints on request, the narrative untouched', () => {
    const div = '<div xmlns="http://www.w3.org/1999/xhtml"><p>x</p></div>';
    const xml = resourceToXml({ resourceType: 'Patient', text: { status: 'generated', div }, active: true }, { pretty: true });
    expect(xml).toBe(`<Patient xmlns="http://hl7.org/fhir">\n  <text>\n    <status value="generated"/>\n    ${div}\n  </text>\n  <active value="true"/>\n</Patient>`);
  });
});
