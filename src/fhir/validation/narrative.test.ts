import { describe, expect, it } from 'vitest';
import { narrativeProblem } from './narrative.js';

const XHTML = 'xmlns="http://www.w3.org/1999/xhtml"';

describe('Narrative.div (txt-1, txt-2)', () => {
  it('accepts formatted XHTML, links, images, character references, a div without its namespace and one with an image alone', () => {
    for (const div of [
      `<div ${XHTML}><p>Peter <b>James</b> &amp; <i>Chalmers</i>&#160;&lt;x&gt;</p><table><tr><td colspan="2" style="color: red">1</td></tr></table></div>`,
      `<div ${XHTML}><a href="https://example.org/x" name="top">link</a><img src="#pic" alt="pic"/><br/></div>`,
      `<div xml:lang="en" ${XHTML}>x</div>`,
      '<div><b>Narrative</b> words</div>',
      `<div ${XHTML}><img src="#scan" alt=""/></div>`,
    ]) {
      expect(narrativeProblem(div), div).toBeUndefined();
    }
  });

  const refused: Array<[string, RegExp]> = [
    [`<div ${XHTML}><script>alert(1)</script></div>`, /<script> is not allowed/],
    [`<div ${XHTML}><p onclick="alert(1)">x</p></div>`, /event attribute onclick/],
    [`<div ${XHTML}><img src="x" onError="alert(1)"/></div>`, /event attribute onError/],
    [`<div ${XHTML}><a href=" JavaScript:alert(1)">x</a></div>`, /runs a script/],
    [`<div ${XHTML}><iframe src="https://evil.example"/></div>`, /<iframe> is not allowed/],
    [`<div ${XHTML}><form action="https://evil.example"><input name="pw"/></form></div>`, /<form> is not allowed/],
    [`<div ${XHTML}><object data="x"/></div>`, /<object> is not allowed/],
    [`<div ${XHTML}><link rel="stylesheet" href="https://evil.example/x.css"/></div>`, /<link> is not allowed/],
    [`<div ${XHTML}><body>x</body></div>`, /<body> is not allowed/],
    [`<div ${XHTML}><svg:svg xmlns:svg="http://www.w3.org/2000/svg"/></div>`, /not XHTML/],
    [`<p ${XHTML}>x</p>`, /root element must be <div>/],
    [`<div ${XHTML}>a < b</div>`, /not well-formed/],
    [`<div ${XHTML}>&nbsp;</div>`, /not well-formed/],
    [`<div ${XHTML}><p>x</div>`, /not well-formed/],
    [`<div ${XHTML}>x</div><div ${XHTML}>y</div>`, /not well-formed|one <div>/],
    [`<div ${XHTML}/>`, /no content.*\(txt-2\)/],
    [`<div ${XHTML}>\n   <pre>\n   </pre>&#160;</div>`, /no content.*\(txt-2\)/],
  ];
  for (const [div, message] of refused) {
    it(`refuses ${div.slice(div.indexOf('>') + 1, div.indexOf('>') + 50)}`, () => {
      expect(narrativeProblem(div)).toMatch(message);
    });
  }
});
