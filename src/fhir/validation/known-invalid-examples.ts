/**
 * Official R4 examples (../shared/data/fhir-examples) that the spec itself ships invalid,
 * by file name, with the reason. Used by the examples test: each must be refused (422).
 *
 * Each reason was checked against the 4.0.1 definitions (profiles-resources.json).
 */
export const KNOWN_INVALID_SPEC_EXAMPLES: Record<string, string> = {
  'DeviceMetric-example.json':
    'DeviceMetric.parent is Reference(Device); the example refers to DeviceDefinition/dc102',
  'DeviceUseStatement-example.json':
    'DeviceUseStatement.reasonReference allows Condition|Observation|DiagnosticReport|DocumentReference|Media; ' +
    'the example refers to Procedure/example',
  'MedicationRequest-medrx0301.json':
    'MedicationRequest.dispenseRequest.performer is Reference(Organization); the example refers to Practitioner/f001',
  'ActivityDefinition-blood-tubes-supply.json': 'txt-2: the narrative (text.div) holds whitespace only',
  'ActivityDefinition-heart-valve-replacement.json': 'txt-2: the narrative (text.div) holds whitespace only',
  'EventDefinition-example.json': 'txt-2: the narrative (text.div) holds whitespace only',
  'Questionnaire-zika-virus-exposure-assessment.json': 'txt-2: the narrative (text.div) holds an empty <pre> and whitespace only',
  'Questionnaire-qs1.json':
    'Questionnaire.item.linkId is 1..1, also for nested items (Questionnaire.item.item → #Questionnaire.item); ' +
    'only the top-level item of this example has a linkId',
};
