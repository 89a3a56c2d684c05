/**
 * examples/dir-hash.ts on the msgpack codec: the same Merkle hash, every payload stored as bytes instead of JSON.
 *
 *   npx rlm run bench/tasks/dir-hash-msgpack.ts --input '{"path":"./src"}'
 */
import dirHash from '../../examples/dir-hash.js';

const task: typeof dirHash = { ...dirHash, name: 'dir-hash-msgpack', codec: 'msgpack' };
export default task;
