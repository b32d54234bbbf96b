// The hub's console: models and releases, deployments, monitoring, gateways and the audit log, for
// model owners and release managers (docs/console.md). What a role may not do is not offered.
import { render } from 'preact';

import '../common/style.css';
import { Console, html } from '../common/ui.js';
import { AuditPage } from './audit.js';
import { DeploymentPage, DeploymentsPage, NewDeploymentPage } from './deployments.js';
import { GatewayPage, GatewaysPage } from './gateways.js';
import { ModelPage, ModelsPage } from './models.js';
import { MonitorPage } from './monitor.js';
import { may } from './roles.js';

const sections = [
  ['/models', 'Models'],
  ['/deployments', 'Deployments'],
  ['/monitor', 'Monitoring'],
  ['/gateways', 'Gateways'],
  ['/audit', 'Audit log', (who) => may(who, 'admin')],
];

function page(route, who) {
  const [section, id, sub] = route.parts;
  switch (section) {
    case 'models':
      return id ? html`<${ModelPage} name=${id} tab=${sub} who=${who} />` : html`<${ModelsPage} />`;
    case 'deployments':
      if (id === 'new') {
        return html`<${NewDeploymentPage} who=${who} params=${route.params} />`;
      }
      return id ? html`<${DeploymentPage} id=${id} who=${who} />` : html`<${DeploymentsPage} who=${who} params=${route.params} />`;
    case 'monitor':
      return html`<${MonitorPage} model=${id} params=${route.params} />`;
    case 'gateways':
      return id ? html`<${GatewayPage} name=${id} />` : html`<${GatewaysPage} />`;
    case 'audit':
      return may(who, 'admin') ? html`<${AuditPage} />` : html`<p>The audit log is for admins.</p>`;
    default:
      return html`<${ModelsPage} />`;
  }
}

render(
  html`<${Console}
    product="Airlock hub"
    tokenHint="A hub API token (alk_…): airlock-hub token create --name NAME --role viewer|publisher|release-manager|admin"
    sections=${sections}
    render=${page}
  />`,
  document.getElementById('app'),
);
