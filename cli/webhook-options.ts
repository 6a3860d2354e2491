/** The `--webhooks FILE` option of `rtcdp dev` and `rtcdp node`. */
import { loadWebhookConfig, WebhookConfigError, type WebhookDestination } from '../decisions/activation-delivery/webhook-config.js';
import { UsageError } from './common.js';

export const WEBHOOKS_HELP =
  'JSON or YAML file listing webhook destinations that receive activations as signed POST requests ' +
  '(decisions/activation-delivery/README.md); each names the environment variable that contains its secret';

/** Reads and validates the destinations file; a missing or invalid file is a usage error. */
export async function readWebhookDestinations(file: string | undefined): Promise<WebhookDestination[]> {
  if (file === undefined) return [];
  try {
    return await loadWebhookConfig(file, process.env);
  } catch (error) {
    // The CLI prefixes the first line with "rtcdp: "; the other issues get the same prefix here.
    if (error instanceof WebhookConfigError) throw new UsageError(error.issues.map((issue) => `--webhooks ${error.file}: ${issue}`).join('\nrtcdp: '), { cause: error });
    throw error;
  }
}
