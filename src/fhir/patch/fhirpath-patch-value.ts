import {
  choiceTypeFor,
  isAssignable,
  isPrimitiveType,
  resolveElementName,
  upperFirst,
  type ElementInfo,
} from './element-model.js';
import type { PatchPart, PatchValue } from './fhirpath-patch-parse.js';
import { unprocessable, type JsonObject } from './patch-errors.js';
import type { SlotValue } from './json-slots.js';

/**
 * Types a patch value against the element it is written to: checks the type (the spec requires
 * an error when it is wrong), picks the JSON key of choice elements (`value` + `Quantity`), and
 * builds complex values given as nested parts ("parts with the names of the elements").
 */

export interface Placed {
  /** JSON key the value is stored under, e.g. `birthDate` or `valueQuantity`. */
  key: string;
  slot: SlotValue;
}

export interface ValueContext {
  /** Message prefix naming the operation, e.g. `operation[2] (add)`. */
  label: string;
  /** FHIRPath location inside the Parameters resource. */
  location: string;
  /** Human readable place of the element, e.g. `Patient.birthDate`. */
  where: string;
}

function typeError(context: ValueContext, message: string): Error {
  return unprocessable(`${context.label}: ${message}`, [context.location], 'invalid');
}

function describeType(element: ElementInfo): string {
  return element.choiceTypes !== undefined ? element.choiceTypes.join(' | ') : (element.type ?? 'unknown');
}

export function placeValue(
  value: PatchValue,
  element: ElementInfo,
  fixedType: string | undefined,
  context: ValueContext,
): Placed {
  if (value.kind === 'resource') {
    const accepts = element.type === 'Resource' || element.type === 'DomainResource' || element.type === value.type;
    if (!accepts) {
      throw typeError(context, `a resource of type ${value.type} cannot be stored in ${context.where} (${describeType(element)})`);
    }
    return { key: element.name, slot: { value: value.value } };
  }

  if (element.choiceTypes !== undefined) {
    if (value.kind === 'parts') {
      if (fixedType === undefined || isPrimitiveType(fixedType)) {
        throw typeError(
          context,
          `${context.where} is a choice element (${describeType(element)}); give a typed value[x] or name it with its type suffix`,
        );
      }
      return { key: element.name + upperFirst(fixedType), slot: { value: buildFromParts(value.parts, fixedType, context) } };
    }
    const chosen =
      fixedType !== undefined ? (isAssignable(value.type, fixedType) ? fixedType : undefined) : choiceTypeFor(element, value.type);
    if (chosen === undefined) {
      throw typeError(context, `a value of type ${value.type} is not allowed for ${context.where} (${fixedType ?? describeType(element)})`);
    }
    return { key: element.name + upperFirst(chosen), slot: { value: value.value, extras: value.extras } };
  }

  const declared = element.type;
  if (declared === undefined || declared === 'Resource' || declared === 'DomainResource') {
    throw typeError(context, `${context.where} holds a resource; supply it in a 'resource' part`);
  }
  if (value.kind === 'parts') {
    if (isPrimitiveType(declared) || element.childrenPath === undefined) {
      throw typeError(context, `${context.where} is a ${declared}, which cannot be built from parts`);
    }
    return { key: element.name, slot: { value: buildFromParts(value.parts, element.childrenPath, context) } };
  }
  if (!isAssignable(value.type, declared)) {
    throw typeError(context, `a value of type ${value.type} cannot be stored in ${context.where} (${declared})`);
  }
  return { key: element.name, slot: { value: value.value, extras: value.extras } };
}

interface Group {
  element: ElementInfo;
  key: string;
  slots: SlotValue[];
  location: string;
}

/** Builds the JSON object of a complex value from its named parts. */
function buildFromParts(parts: PatchPart[], childrenPath: string, context: ValueContext): JsonObject {
  const groups = new Map<string, Group>();
  for (const part of parts) {
    const partContext: ValueContext = { ...context, location: part.location, where: `${childrenPath}.${part.name}` };
    const resolved = resolveElementName(childrenPath, part.name);
    if (resolved === undefined) throw typeError(partContext, `${childrenPath} has no element '${part.name}'`);
    const placed = placeValue(part.value, resolved.element, resolved.fixedType, partContext);
    // Group by element name so two different types for one choice element are caught too.
    const group = groups.get(resolved.element.name);
    if (group === undefined) {
      groups.set(resolved.element.name, { element: resolved.element, key: placed.key, slots: [placed.slot], location: part.location });
      continue;
    }
    if (group.key !== placed.key || !resolved.element.repeating) {
      throw typeError(partContext, `${childrenPath}.${resolved.element.name} allows only one value`);
    }
    group.slots.push(placed.slot);
  }

  const out: JsonObject = {};
  for (const { element, key, slots } of groups.values()) {
    if (element.repeating) {
      out[key] = slots.map((s) => s.value ?? null);
      if (slots.some((s) => s.extras !== undefined)) out[`_${key}`] = slots.map((s) => s.extras ?? null);
    } else {
      const [slot] = slots;
      if (slot.value !== undefined && slot.value !== null) out[key] = slot.value;
      if (slot.extras !== undefined) out[`_${key}`] = slot.extras;
    }
  }
  return out;
}
