/**
 * A panel component OHIF's React can render without us shipping React: a class component (React
 * recognises one by `prototype.isReactComponent`) whose render returns a plain element object for a
 * <div>, into which our DOM view is mounted. OHIF 3.13 renders panels with React 18.3, whose element
 * objects carry `$$typeof: Symbol.for('react.element')`.
 */

export type Mount = (container: HTMLElement) => () => void;

interface HostInstance {
  props: Record<string, unknown>;
  container: HTMLElement | null;
  unmount?: () => void;
  setContainer: (el: HTMLElement | null) => void;
}

export function domComponent(mount: Mount, displayName: string): unknown {
  function Host(this: HostInstance, props: Record<string, unknown>) {
    this.props = props;
    this.container = null;
    this.setContainer = (el) => {
      this.container = el;
    };
  }
  Host.displayName = displayName;
  Host.prototype.isReactComponent = {};
  Host.prototype.render = function (this: HostInstance) {
    return {
      $$typeof: Symbol.for('react.element'),
      type: 'div',
      key: null,
      ref: this.setContainer,
      props: { className: 'ldfsam-host', style: { height: '100%', overflowY: 'auto' } },
      _owner: null,
      _store: {},
    };
  };
  Host.prototype.componentDidMount = function (this: HostInstance) {
    if (this.container) this.unmount = mount(this.container);
  };
  Host.prototype.componentWillUnmount = function (this: HostInstance) {
    this.unmount?.();
  };
  Host.prototype.shouldComponentUpdate = () => false;
  return Host;
}
