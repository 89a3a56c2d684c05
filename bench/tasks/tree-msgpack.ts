/**
 * examples/tree.ts on the msgpack codec: the same tree, every payload stored as bytes instead of JSON text.
 *
 *   npx rlm run bench/tasks/tree-msgpack.ts --input '{"fanout":10,"depth":5}'   # 111,111 nodes
 */
import tree from '../../examples/tree.js';

const task: typeof tree = { ...tree, name: 'tree-msgpack', codec: 'msgpack' };
export default task;
