/**
 * Reading match models from JSON: a model as `MatchModel` describes it, or a batch run's
 * report.json, whose `model` member is one. Parameters estimated on one data set can so
 * score another, or the online matcher.
 */
import { readFile } from 'node:fs/promises';
import { ConfigError } from '../../common/errors.js';
import { describeFsError } from '../../common/fs-errors.js';
import { FIELD_KINDS, LEVEL_LABELS, type FieldKind } from './comparators.js';
import { createSchema } from './comparison-schema.js';
import { MODEL_VERSION, type FieldParameters, type MatchModel } from './fellegi-sunter.js';

/** Reads a model file. Throws ConfigError naming `source` (such as `--model FILE`) and the member at fault. */
export async function readModelFile(file: string, source = `--model ${file}`): Promise<MatchModel> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new ConfigError(`${source} cannot be read: ${describeFsError(error)}`, { cause: error });
  }

  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new ConfigError(`${source} is not valid JSON: ${(error as Error).message}`, { cause: error });
  }
  return parseMatchModel(value, source);
}

/** Validates a model, or the `model` member of a report. */
export function parseMatchModel(value: unknown, source = 'model'): MatchModel {
  const object = isObject(value) && isObject(value.model) ? value.model : value;
  if (!isObject(object)) throw new ConfigError(`${source} must be a JSON object with version, fields and lambda`);
  if (object.version !== MODEL_VERSION) throw new ConfigError(`${source}: version must be ${MODEL_VERSION}, received ${JSON.stringify(object.version)}`);
  if (!isProbability(object.lambda)) throw new ConfigError(`${source}: lambda must be a number greater than 0 and less than 1, received ${JSON.stringify(object.lambda)}`);
  if (!Array.isArray(object.fields) || object.fields.length === 0) throw new ConfigError(`${source}: fields must be a non-empty list`);

  const fields = object.fields.map((field, index) => parseField(field, `${source}: fields[${index}]`));
  let schema;
  try {
    schema = createSchema(fields.map((field) => field.name));
  } catch (error) {
    throw new ConfigError(`${source}: ${(error as Error).message}`, { cause: error });
  }
  schema.fields.forEach((field, index) => {
    if (field.kind !== fields[index].kind) throw new ConfigError(`${source}: fields[${index}].kind must be ${field.kind} for ${field.name}, received ${fields[index].kind}`);
  });
  return { version: MODEL_VERSION, fields, lambda: object.lambda as number };
}

function parseField(value: unknown, path: string): FieldParameters {
  if (!isObject(value) || typeof value.name !== 'string') throw new ConfigError(`${path} must be an object with name, kind and levels`);
  if (!FIELD_KINDS.includes(value.kind as FieldKind)) throw new ConfigError(`${path}.kind must be one of ${FIELD_KINDS.join(', ')}, received ${JSON.stringify(value.kind)}`);

  const kind = value.kind as FieldKind;
  const labels = LEVEL_LABELS[kind];
  if (!Array.isArray(value.levels) || value.levels.length !== labels.length) {
    throw new ConfigError(`${path}.levels must list the ${labels.length} levels of a ${kind} field (${labels.join(', ')})`);
  }
  const levels = value.levels.map((level, index) => {
    if (!isObject(level) || !isProbability(level.m) || !isProbability(level.u)) {
      throw new ConfigError(`${path}.levels[${index}] must have m and u greater than 0 and less than 1`);
    }
    return { label: labels[index], m: level.m as number, u: level.u as number };
  });
  return { name: value.name, kind, levels };
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isProbability(value: unknown): boolean {
  return typeof value === 'number' && value > 0 && value < 1;
}
