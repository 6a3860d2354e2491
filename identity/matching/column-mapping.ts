/**
 * Column mappings: the CSV column of each person field, the id column, and the source of the
 * ground truth. A preset gives the layout of a known data set. Explicit `FIELD=COLUMN`
 * entries override it.
 */
import { IDENTIFIER_FIELD_PREFIX } from './comparison-schema.js';
import { PERSON_TEXT_FIELDS } from './person.js';

export const PRESET_NAMES = ['auto', 'febrl', 'splink'] as const;

export type PresetName = (typeof PRESET_NAMES)[number];

export interface Preset {
  readonly description: string;
  /** Id column, the first of these that the header has. Without one, the row number is the id. */
  readonly idColumns: readonly string[];
  /** Per field, the columns that may feed it. The first that the header has is used. */
  readonly fields: Readonly<Record<string, readonly string[]>>;
  /** Ground truth column, used when the header has it. */
  readonly truthColumn?: string;
  /** Regular expression whose first group is the entity of a record id. */
  readonly truthFromId?: string;
}

/** Column names of the `auto` preset: each field's own name, in camelCase or snake_case. */
const AUTO_FIELDS = Object.fromEntries(PERSON_TEXT_FIELDS.map((field) => [field, [field, snakeCase(field)]]));

export const PRESETS: Readonly<Record<PresetName, Preset>> = {
  auto: {
    description: 'columns named like the fields, such as given_name or givenName, and an id column named id',
    idColumns: ['id'],
    fields: AUTO_FIELDS,
  },
  febrl: {
    description: 'the FEBRL data sets: rec_id, given_name, surname, street_number, address_1, address_2, suburb, postcode, state, date_of_birth, soc_sec_id; the entity is N of rec-N-org and rec-N-dup-K',
    idColumns: ['rec_id'],
    fields: {
      givenName: ['given_name'],
      surname: ['surname'],
      streetNumber: ['street_number'],
      addressLine1: ['address_1'],
      addressLine2: ['address_2'],
      city: ['suburb'],
      postcode: ['postcode'],
      state: ['state'],
      dateOfBirth: ['date_of_birth'],
      [`${IDENTIFIER_FIELD_PREFIX}soc_sec_id`]: ['soc_sec_id'],
    },
    truthFromId: '^rec-(\\d+)-(?:org|dup-\\d+)$',
  },
  splink: {
    description: 'the Splink example data sets fake_1000 and historical_figures_with_errors_50k: unique_id, first_name, surname, dob, city or birth_place, postcode_fake, email; the truth column is cluster',
    idColumns: ['unique_id'],
    fields: {
      givenName: ['first_name'],
      surname: ['surname'],
      dateOfBirth: ['dob'],
      city: ['city', 'birth_place'],
      postcode: ['postcode_fake'],
      email: ['email'],
    },
    truthColumn: 'cluster',
  },
};

/** The mapping of one file, resolved against its header. */
export interface ColumnMapping {
  /** Id column, or undefined to number the rows from 1. */
  readonly idColumn: string | undefined;
  /** Field name (PersonRecord field or `identifier:NAME`) to column. */
  readonly fields: ReadonlyMap<string, string>;
  readonly truthColumn: string | undefined;
  readonly truthFromId: RegExp | undefined;
}

export interface MappingRequest {
  preset: PresetName;
  /** Explicit `FIELD=COLUMN` entries, which must exist in the header. */
  columns?: ReadonlyMap<string, string>;
  idColumn?: string;
  /** Truth column, which must exist in the header. */
  truthColumn?: string;
  truthFromId?: string;
  /** Ignore the preset's truth source. */
  noTruth?: boolean;
}

/** Reasons a mapping cannot be built, which record-files.ts turns into errors naming the file. */
export type MappingProblem =
  | { kind: 'unknown-field'; field: string }
  | { kind: 'missing-column'; option: string; column: string }
  | { kind: 'invalid-regex'; pattern: string; reason: string }
  | { kind: 'no-fields' };

/** Resolves a mapping request against a file's header. */
export function resolveMapping(request: MappingRequest, header: readonly string[]): ColumnMapping | MappingProblem {
  const preset = PRESETS[request.preset];
  const present = new Set(header);
  const fields = new Map<string, string>();

  for (const [field, candidates] of Object.entries(preset.fields)) {
    const column = candidates.find((candidate) => present.has(candidate));
    if (column !== undefined) fields.set(field, column);
  }
  for (const [field, column] of request.columns ?? []) {
    if (!isFieldName(field)) return { kind: 'unknown-field', field };
    if (!present.has(column)) return { kind: 'missing-column', option: `--column ${field}=${column}`, column };
    fields.set(field, column);
  }
  if (fields.size === 0) return { kind: 'no-fields' };

  if (request.idColumn !== undefined && !present.has(request.idColumn)) return { kind: 'missing-column', option: '--id-column', column: request.idColumn };
  const idColumn = request.idColumn ?? preset.idColumns.find((column) => present.has(column));

  const truth = resolveTruth(request, preset, present);
  if ('kind' in truth) return truth;
  return { idColumn, fields, ...truth };
}

function resolveTruth(request: MappingRequest, preset: Preset, present: ReadonlySet<string>): Pick<ColumnMapping, 'truthColumn' | 'truthFromId'> | MappingProblem {
  if (request.truthColumn !== undefined && !present.has(request.truthColumn)) return { kind: 'missing-column', option: '--truth', column: request.truthColumn };
  if (request.noTruth === true) return { truthColumn: undefined, truthFromId: undefined };

  const pattern = request.truthFromId ?? (request.truthColumn === undefined ? preset.truthFromId : undefined);
  let truthFromId: RegExp | undefined;
  if (pattern !== undefined) {
    try {
      truthFromId = new RegExp(pattern);
    } catch (error) {
      return { kind: 'invalid-regex', pattern, reason: (error as Error).message };
    }
  }

  const presetColumn = preset.truthColumn !== undefined && present.has(preset.truthColumn) ? preset.truthColumn : undefined;
  const truthColumn = request.truthColumn ?? (truthFromId === undefined ? presetColumn : undefined);
  return { truthColumn, truthFromId };
}

/** Returns whether a name is a PersonRecord text field or `identifier:NAME`. */
export function isFieldName(field: string): boolean {
  if (field.startsWith(IDENTIFIER_FIELD_PREFIX)) return field.length > IDENTIFIER_FIELD_PREFIX.length;
  return (PERSON_TEXT_FIELDS as readonly string[]).includes(field);
}

function snakeCase(name: string): string {
  return name.replace(/([a-z])([A-Z0-9])/g, '$1_$2').toLowerCase();
}
