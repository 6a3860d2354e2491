/**
 * Reads a CSV file of person records through a column mapping. Every value is read as a
 * string, so postcodes and ids keep their leading zeros. Spaces around values are trimmed,
 * which also reads the FEBRL files, whose values are separated by a comma and a space.
 */
import { createReadStream } from 'node:fs';
import { access } from 'node:fs/promises';
import { parse } from 'csv-parse';
import { describeFsError } from '../../common/fs-errors.js';
import { IDENTIFIER_FIELD_PREFIX } from './comparison-schema.js';
import { resolveMapping, type ColumnMapping, type MappingProblem, type MappingRequest } from './column-mapping.js';
import { RecordInputError } from './errors.js';
import type { PersonRecord, PersonTextField } from './person.js';

export interface RecordSet {
  readonly file: string;
  readonly mapping: ColumnMapping;
  readonly ids: string[];
  readonly persons: PersonRecord[];
  /** The entity of each record when the mapping has a truth source. */
  readonly entities: string[] | undefined;
}

/**
 * Reads one file. Throws RecordInputError when the file cannot be read, a mapped column is
 * missing, an id repeats, or a record has no truth value.
 */
export async function readRecordFile(file: string, request: MappingRequest): Promise<RecordSet> {
  try {
    await access(file);
  } catch (error) {
    throw new RecordInputError(`--file ${file} cannot be read: ${describeFsError(error)}`, { cause: error });
  }

  // csv-parse handles each chunk of the stream in one go. Chunks of 16 KiB (about 150 FEBRL
  // rows) keep that under a few milliseconds, where the default 64 KiB blocked the event
  // loop for 15 to 50 ms per chunk.
  const stream = createReadStream(file, { highWaterMark: 4 * 1024 });
  const parser = stream.pipe(parse({ columns: true, trim: true, skip_empty_lines: true, bom: true, info: true }));
  let mapping: ColumnMapping | undefined;
  const set = { ids: [] as string[], persons: [] as PersonRecord[], entities: [] as string[] };
  const seenIds = new Map<string, number>();
  let line = 1;

  try {
    for await (const { record: row, info } of parser as AsyncIterable<{ record: Record<string, string>; info: { lines: number } }>) {
      line = info.lines;
      mapping ??= mappingFor(file, request, Object.keys(row));
      const id = mapping.idColumn === undefined ? String(set.ids.length + 1) : row[mapping.idColumn];
      checkId(file, line, id, mapping, seenIds);
      set.ids.push(id);
      set.persons.push(personOf(row, mapping));
      if (mapping.truthColumn !== undefined || mapping.truthFromId !== undefined) set.entities.push(entityOf(file, line, id, row, mapping));
    }
  } catch (error) {
    if (error instanceof RecordInputError) throw error;
    throw new RecordInputError(`--file ${file} is not valid CSV near line ${line}: ${(error as Error).message}`, { cause: error });
  }

  if (mapping === undefined) throw new RecordInputError(`--file ${file} has no records after its header`);
  const hasTruth = mapping.truthColumn !== undefined || mapping.truthFromId !== undefined;
  return { file, mapping, ids: set.ids, persons: set.persons, entities: hasTruth ? set.entities : undefined };
}

function mappingFor(file: string, request: MappingRequest, header: string[]): ColumnMapping {
  const mapping = resolveMapping(request, header);
  if ('kind' in mapping) throw new RecordInputError(describeProblem(file, mapping, header));
  return mapping;
}

function describeProblem(file: string, problem: MappingProblem, header: readonly string[]): string {
  switch (problem.kind) {
    case 'unknown-field':
      return `--column ${problem.field}: ${JSON.stringify(problem.field)} is not a person field. Use givenName, surname, dateOfBirth, streetNumber, addressLine1, addressLine2, city, postcode, state, phone, email or ${IDENTIFIER_FIELD_PREFIX}NAME`;
    case 'missing-column':
      return `${problem.option}: --file ${file} has no column ${JSON.stringify(problem.column)}. Its columns are ${header.join(', ')}`;
    case 'invalid-regex':
      return `--truth-from-id ${JSON.stringify(problem.pattern)} is not a valid regular expression: ${problem.reason}`;
    case 'no-fields':
      return `--file ${file} has no column that the preset maps to a person field. Its columns are ${header.join(', ')}. Choose a --preset or map columns with --column FIELD=COLUMN`;
  }
}

function checkId(file: string, line: number, id: string | undefined, mapping: ColumnMapping, seenIds: Map<string, number>): void {
  if (id === undefined || id === '') throw new RecordInputError(`--file ${file} line ${line}: the id column ${mapping.idColumn ?? ''} is empty. Every record needs an id`);
  const previous = seenIds.get(id);
  if (previous !== undefined) throw new RecordInputError(`--file ${file} line ${line}: id ${JSON.stringify(id)} repeats line ${previous}. Ids must be unique within a file`);
  seenIds.set(id, line);
}

function personOf(row: Record<string, string>, mapping: ColumnMapping): PersonRecord {
  const person: PersonRecord & Record<string, unknown> = {};
  const identifiers: Record<string, string> = {};
  for (const [field, column] of mapping.fields) {
    const value = row[column] ?? '';
    if (field.startsWith(IDENTIFIER_FIELD_PREFIX)) identifiers[field.slice(IDENTIFIER_FIELD_PREFIX.length)] = value;
    else person[field as PersonTextField] = value;
  }
  if (Object.keys(identifiers).length > 0) person.identifiers = identifiers;
  return person;
}

function entityOf(file: string, line: number, id: string, row: Record<string, string>, mapping: ColumnMapping): string {
  if (mapping.truthFromId !== undefined) {
    const match = mapping.truthFromId.exec(id);
    if (match === null || match[1] === undefined) {
      throw new RecordInputError(`--truth-from-id ${mapping.truthFromId.source}: id ${JSON.stringify(id)} on line ${line} of --file ${file} does not match, or the expression has no capturing group for the entity`);
    }
    return match[1];
  }

  const entity = row[mapping.truthColumn as string];
  if (entity === undefined || entity === '') throw new RecordInputError(`--truth ${mapping.truthColumn}: the value on line ${line} of --file ${file} is empty. Every record needs its entity`);
  return entity;
}
