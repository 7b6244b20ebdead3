// kit's dashboard panels as JupyterLab tabs, beside the notebook (like dask-labextension).
//
// `%cluster dashboard` outputs application/vnd.kit.dashboard+json: {url, panel, panels}. This
// extension renders it as buttons (and the chosen panel in the cell); a button opens that
// panel as a dockable tab: an iframe of the token-authenticated panel URL, which the
// dashboard keeps live over its websocket. The command palette reopens them ("kit:").
import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette, IFrame, MainAreaWidget, WidgetTracker } from '@jupyterlab/apputils';
import { IRenderMime, IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { Widget } from '@lumino/widgets';

const MIME = 'application/vnd.kit.dashboard+json';
const OPEN = 'kit-dashboard:open';
const PANELS = ['overview', 'stream', 'tasks', 'actors', 'workers', 'drivers'];
const TITLES: { [k: string]: string } = {
  overview: 'Nodes', stream: 'Task stream', tasks: 'Tasks', actors: 'Actors',
  workers: 'Workers', drivers: 'Drivers'
};

interface IDashboardData { url: string; panel: string; panels: string[] }

let lastUrl: string | null = null; // the page URL the last %cluster dashboard showed

function panelUrl(url: string, panel: string): string {
  return panel ? url + (url.includes('?') ? '&' : '?') + 'panel=' + encodeURIComponent(panel) : url;
}

class DashboardOutput extends Widget implements IRenderMime.IRenderer {
  constructor(private app: JupyterFrontEnd) {
    super();
    this.addClass('kit-dashboard-buttons');
  }

  async renderModel(model: IRenderMime.IMimeModel): Promise<void> {
    const data = model.data[MIME] as unknown as IDashboardData;
    lastUrl = data.url;
    this.node.textContent = '';
    const label = document.createElement('span');
    label.textContent = 'kit dashboard — open as a tab: ';
    this.node.appendChild(label);
    for (const p of data.panels || PANELS) {
      const b = document.createElement('button');
      b.className = 'jp-Button jp-mod-styled kit-dashboard-open';
      b.dataset.panel = p;
      b.textContent = TITLES[p] || p;
      b.onclick = () => void this.app.commands.execute(OPEN, { url: data.url, panel: p });
      this.node.appendChild(b);
    }
    const frame = document.createElement('iframe');
    frame.src = panelUrl(data.url, data.panel);
    frame.referrerPolicy = 'no-referrer';
    this.node.appendChild(frame);
  }
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'kit-dashboard:plugin',
  description: "kit's cluster dashboard panels as dockable tabs",
  autoStart: true,
  requires: [IRenderMimeRegistry],
  optional: [ICommandPalette],
  activate: (app: JupyterFrontEnd, rendermime: IRenderMimeRegistry, palette: ICommandPalette | null) => {
    const tracker = new WidgetTracker<MainAreaWidget<IFrame>>({ namespace: 'kit-dashboard' });
    app.commands.addCommand(OPEN, {
      label: args => 'kit: ' + (TITLES[String(args.panel || 'overview')] || 'dashboard'),
      execute: args => {
        const panel = String(args.panel || 'overview');
        const url = String(args.url || lastUrl || '');
        if (!url) {
          window.alert('Run %cluster dashboard in a notebook first: it tells this tab where the dashboard is.');
          return;
        }
        lastUrl = url;
        const id = 'kit-dashboard-' + panel;
        const open = tracker.find(w => w.id === id);
        if (open) {
          open.content.url = panelUrl(url, panel);
          app.shell.activateById(id);
          return open;
        }
        const content = new IFrame({
          sandbox: ['allow-scripts', 'allow-same-origin', 'allow-downloads', 'allow-popups'],
          referrerPolicy: 'no-referrer'
        });
        content.url = panelUrl(url, panel);
        const widget = new MainAreaWidget({ content });
        widget.id = id;
        widget.addClass('kit-dashboard-tab');
        widget.title.label = 'kit: ' + (TITLES[panel] || panel);
        widget.title.closable = true;
        app.shell.add(widget, 'main', { mode: 'split-right' });
        void tracker.add(widget);
        return widget;
      }
    });
    rendermime.addFactory(
      { safe: false, mimeTypes: [MIME], createRenderer: () => new DashboardOutput(app) },
      0
    );
    if (palette) {
      for (const panel of PANELS) {
        palette.addItem({ command: OPEN, args: { panel }, category: 'kit dashboard' });
      }
    }
  }
};

export default plugin;
