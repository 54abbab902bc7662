export { freePorts } from '../../server/src/util/ports.js';
