// Chinese labels for the workbench pages (customers, conversations, tasks): timeline kinds, provenance sources,
// profile keys, task kinds, run states, and the English fragments the engine writes into timeline summaries.
import { STAGES } from '../../format'

export type TagType = 'primary' | 'success' | 'warning' | 'danger' | 'info'

/** Timeline kinds → label and colour. msg_in / msg_out / msg_human are the transcript's messages merged in. */
export const KINDS: Record<string, { label: string; type: TagType }> = {
  msg_in: { label: '客户消息', type: 'info' },
  msg_out: { label: '机器人回复', type: 'success' },
  msg_human: { label: '人工回复', type: 'primary' },
  inbound: { label: '客户消息', type: 'info' },
  reply: { label: '机器人回复', type: 'success' },
  chat: { label: '对话', type: 'success' },
  human_reply: { label: '人工回复', type: 'primary' },
  ask: { label: '提问', type: 'primary' },
  answer: { label: '客户回答', type: 'success' },
  answer_invalid: { label: '回答无效', type: 'warning' },
  ask_timeout: { label: '提问超时', type: 'warning' },
  tag: { label: '标签', type: 'primary' },
  stage: { label: '阶段变化', type: 'primary' },
  profile: { label: '画像更新', type: 'info' },
  handoff: { label: '转人工', type: 'danger' },
  paused: { label: '人工处理中', type: 'warning' },
  paused_ack: { label: '已告知稍候', type: 'info' },
  released: { label: '交还机器人', type: 'success' },
  deferred: { label: '推迟发送', type: 'warning' },
  cancelled: { label: '取消发送', type: 'danger' },
  coupon_skipped: { label: '未发券', type: 'warning' },
  enrolled: { label: '进入 SOP', type: 'primary' },
  completed: { label: '完成 SOP', type: 'success' },
  exited: { label: '退出 SOP', type: 'info' },
  end: { label: '流程结束', type: 'info' },
  skipped: { label: '未进入 SOP', type: 'info' },
  branch: { label: '流程分支', type: 'info' },
  order: { label: '订单', type: 'success' },
  behaviour: { label: '行为', type: 'info' },
  task: { label: '员工待办', type: 'warning' },
  task_done: { label: '任务完成', type: 'success' },
  added: { label: '添加好友', type: 'success' },
  unsubscribed: { label: '退订', type: 'danger' },
  customer_deleted: { label: '删除好友', type: 'danger' },
  rejected: { label: '事件被忽略', type: 'info' },
}

export function kindOf(kind: string): { label: string; type: TagType } {
  return KINDS[kind] ?? { label: kind, type: 'info' }
}

/** Kinds that are a message; the transcript (/messages) carries the same messages with more detail. */
export const MESSAGE_KINDS = new Set(['inbound', 'reply', 'chat', 'human_reply'])

const ORDER_EVENTS: Record<string, string> = {
  created: '已下单', paid: '已付款', shipped: '已发货', delivered: '已签收', refunded: '已退款', cancelled: '已取消',
  completed: '已完成',
}

const BEHAVIOURS: Record<string, string> = {
  group_checkin: '群打卡', group_joined: '入群', group_left: '退群', miniprogram_visit: '逛小程序',
  live_booked: '预约直播', content_read: '阅读内容', live_watched: '观看直播', coupon_used: '用券',
}

export const FACT_KEYS: Record<string, string> = {
  skin_type: '肤质', concern: '护肤诉求', budget: '预算', complaint_issue: '投诉问题', complaint_order: '投诉订单',
  complaint_satisfaction: '投诉满意度', phone: '手机号', city: '城市', birthday: '生日', gender: '性别', age: '年龄',
}

export const FACT_METHODS: Record<string, string> = {
  answer: '客户回答', rule: '规则识别', message: '消息提取', operator: '运营填写', import: '导入', llm: '模型提取',
}

/** The bot's reading of a customer message (MessageOut.intent). */
export const INTENTS: Record<string, string> = {
  product_question: '产品咨询', recommendation: '求推荐', comparison: '产品对比', purchase_intent: '想购买',
  promotion: '优惠活动', live_schedule: '直播时间', order_status: '订单状态', logistics: '物流', shipping_time: '发货时间',
  return_exchange: '退换货', price_protection: '价保', invoice: '发票', shelf_life: '保质期', usage_order: '使用顺序',
  adverse_reaction: '不良反应', damaged: '商品破损', missing_item: '少件', quality_issue: '质量问题', complaint: '投诉',
  abuse: '辱骂', human: '要求人工', greeting: '打招呼', thanks: '感谢', smalltalk: '闲聊', hold_on: '稍等',
  repeat_question: '重复提问', unknown: '未识别',
}

const ENGLISH: [RegExp, string | ((...m: string[]) => string)][] = [
  [/quiet hours/g, '免打扰时段'],
  [/daily cap of (\d+) reached/g, '已达每日推送上限 $1 条'],
  [/minimum interval of (.+?) since the last push/g, '距上次推送未满 $1'],
  [/today's last (\d+) slot\(s\) kept for time-critical content/g, '今日最后 $1 个名额留给时效内容'],
  [/open (.+?): marketing paused/g, '「$1」进行中，营销暂停'],
  [/reached the end/g, '流程走完'],
  [/not in the audience/g, '不在目标人群'],
  [/already went through this SOP/g, '已参加过此 SOP'],
  [/re-enrolment allowed after /g, '再次进入需间隔 '],
  [/customer unsubscribed \(退订\)/g, '客户已退订'],
  [/customer unsubscribed from marketing/g, '客户已退订营销消息'],
  [/customer deleted us \(churned\)|customer deleted us/g, '客户已删除好友'],
  [/customer_added/g, '新加好友'],
  [/tag_added:(\S+?)(?=）|$)/g, '打上标签「$1」'],
  [/message_intent:([a-z_]+)/g, (_m, i) => `消息意图「${INTENTS[i] ?? i}」`],
  [/order_event/g, '订单事件'],
  [/behaviour:?/g, '行为 '],
  [/\bschedule\b/g, '定时'],
  [/silent for (\d+) days/g, '沉默 $1 天'],
  [/（purchased）/g, '（已下单）'],
  [/（unsubscribed）/g, '（已退订）'],
  [/（churned）/g, '（已流失）'],
  [/not an order number or phone number/g, '不是订单号或手机号'],
  [/not a mobile number/g, '不是手机号'],
  [/no number found/g, '没找到数字'],
  [/no date found/g, '没找到日期'],
  [/no option matched/g, '没有匹配的选项'],
  [/several options matched: /g, '匹配到多个选项：'],
  [/answer too long/g, '回答太长'],
  [/empty answer/g, '回答为空'],
  [/阶段 (\w+) → (\w+)/g, (_m, a, b) => `阶段 ${STAGES[a] ?? a} → ${STAGES[b] ?? b}`],
  [/^订单 (\S+) ([a-z_]+)/, (_m, id, ev) => `订单 ${id} ${ORDER_EVENTS[ev] ?? ev}`],
  [/^行为：([a-z_]+)/, (_m, ev) => `行为：${BEHAVIOURS[ev] ?? ev}`],
  [/^画像：([a-z_]+) = (.*)（([a-z]+)，/, (_m, k, v, how) => `画像：${FACT_KEYS[k] ?? k} = ${v}（${FACT_METHODS[how] ?? how}，`],
]

/** A timeline summary with the engine's English reasons said in Chinese. */
export function readable(summary: string): string {
  let out = summary
  for (const [pattern, by] of ENGLISH) out = typeof by === 'string' ? out.replace(pattern, by) : out.replace(pattern, by)
  return out
}

/** Stage history: "阶段 new → active（客户发来消息）" → {from, to, why}. */
export function parseStage(summary: string): { from: string; to: string; why: string } | null {
  const m = /阶段\s+(\S+)\s*→\s*(\S+?)(?:（(.*)）)?$/.exec(summary)
  if (!m) return null
  return { from: STAGES[m[1]] ?? m[1], to: STAGES[m[2]] ?? m[2], why: m[3] ? readable(m[3]) : '' }
}

/** Who or what set a tag (or a profile fact), in words: "operator:alice", "import/…", "rule:…", SOP step keys… */
export function provenance(source: string, sops: Record<string, string> = {}): string {
  const sopName = (id: string) => (sops[id] ? `SOP「${sops[id]}」` : `SOP「${id}」`)
  if (source.startsWith('operator:')) return `运营 ${source.slice(9)} 手动设置`
  if (source.startsWith('import')) return '客户导入 / 初次同步'
  if (source.startsWith('rule:')) {
    const conf = /conf=([\d.]+)/.exec(source)
    return `聊天内容规则识别${conf ? `（置信度 ${conf[1]}）` : ''}`
  }
  if (source.startsWith('msg:')) return '客户消息中提取'
  const step = (rest: string) => {
    const parts = rest.split('|')[0].split('/')
    return { sop: parts[0], parts }
  }
  if (source.startsWith('answer:')) return `客户回答 ${sopName(step(source.slice(7)).sop)} 的提问`
  if (source.startsWith('late:')) return `客户补答 ${sopName(step(source.slice(5)).sop)} 的提问（超时后）`
  if (source.startsWith('completed/')) return `完成 ${sopName(source.split('/')[1])} 时打上`
  if (source.startsWith('exited/')) return `退出 ${sopName(source.split('/')[1])} 时打上`
  if (source.startsWith('wecom') || source.startsWith('sync')) return '企业微信同步'
  const first = source.split(/[/:|]/)[0]
  if (sops[first]) {
    const parts = source.split('/')
    const last = parts[parts.length - 1]
    // sop/customer/origin…/step[/n]: the step is the last segment, or the one before a counter like "1"/"run.1"
    const stepId = /^(\d+|[\w]+\.\d+)$/.test(last) && parts.length > 2 ? parts[parts.length - 2] : last
    return `${sopName(first)} 自动设置（步骤 ${stepId}）`
  }
  return source
}

export const TASK_KINDS: Record<string, string> = {
  send_private: '私聊发送', send_group: '群发消息', post_moment: '发朋友圈', handoff: '人工跟进',
}

export const ASSIGNEES: Record<string, string> = {
  owner: '客户跟进人', group_owner: '群主', advisor: '顾问', admin: '管理员', operator: '运营',
}

export const RUN_STATUS: Record<string, { label: string; type: TagType }> = {
  active: { label: '进行中', type: 'success' },
  scheduled: { label: '等待下一步', type: 'primary' },
  completed: { label: '已完成', type: 'info' },
  exited: { label: '已退出', type: 'warning' },
}

export const WAITING: Record<string, string> = {
  ask: '等客户回答', segment: '等待时间到', chat: '等客户回复', wait: '等待中',
}

export const REASON_TYPES: Record<string, TagType> = {
  待人工处理: 'danger', 机器人已暂停: 'warning', '情绪负面/投诉': 'danger', 未能回答: 'info',
}

export const MATERIAL_TYPES: Record<string, string> = {
  text: '文字', image: '图片', link: '链接', video: '视频', miniprogram: '小程序', file: '文件',
}

/** A short time: "14:05" today, "01-06 14:05" this year, else the full date. */
export function short(value: string | null | undefined): string {
  if (!value) return ''
  const d = new Date(value)
  if (Number.isNaN(d.getTime())) return value
  const now = new Date()
  const p = (n: number) => String(n).padStart(2, '0')
  const hm = `${p(d.getHours())}:${p(d.getMinutes())}`
  if (d.toDateString() === now.toDateString()) return hm
  if (d.getFullYear() === now.getFullYear()) return `${p(d.getMonth() + 1)}-${p(d.getDate())} ${hm}`
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${hm}`
}

