// The gateway's console, for the factory's OT staff: what arrived and waits for a decision, the
// site's devices and their enrollment, the rollouts in progress, and the site's own telemetry
// (docs/console.md). A viewer
// token looks; an operator token also acts.
import { render } from 'preact';

import '../common/style.css';
import { Console, html } from '../common/ui.js';
import { ApprovalPage, ApprovalsPage } from './approvals.js';
import { DevicesPage } from './devices.js';
import { RolloutPage, RolloutsPage } from './rollouts.js';
import { TelemetryPage } from './telemetry.js';

const sections = [
  ['/approvals', 'Approvals'],
  ['/devices', 'Devices'],
  ['/rollouts', 'Rollouts'],
  ['/telemetry', 'Telemetry'],
];

function page(route, who) {
  const [section, id] = route.parts;
  switch (section) {
    case 'devices':
      return html`<${DevicesPage} who=${who} />`;
    case 'telemetry':
      return html`<${TelemetryPage} model=${id} params=${route.params} />`;
    case 'rollouts':
      return id ? html`<${RolloutPage} id=${id} who=${who} />` : html`<${RolloutsPage} />`;
    case 'approvals':
    default:
      return id ? html`<${ApprovalPage} id=${id} who=${who} />` : html`<${ApprovalsPage} />`;
  }
}

render(
  html`<${Console}
    product="Airlock gateway"
    tokenHint="A gateway operator token (alkop_…): airlock-gateway token create --name NAME --role operator|viewer --config gateway.yaml"
    sections=${sections}
    render=${page}
  />`,
  document.getElementById('app'),
);
