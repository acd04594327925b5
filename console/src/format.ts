// Display helpers shared by the pages.
export function dt(value: string | null | undefined): string {
  if (!value) return '—'
  const d = new Date(value)
  if (Number.isNaN(d.getTime())) return value
  const p = (n: number) => String(n).padStart(2, '0')
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}`
}

export const STAGES: Record<string, string> = {
  new: '新客', active: '活跃', customer: '已购', repeat: '复购', silent: '沉默', churned: '流失',
}

export const FAMILIES: Record<string, string> = {
  nurture: '新客培育', tagging: '打标签', reactivation: '沉默召回', repurchase: '复购关怀', interest_followup: '兴趣跟进',
  behaviour: '行为触发', complaint: '客诉处理', group_ops: '社群运营', launch: '新品上市', promotion: '大促活动',
  livestream: '直播', referral: '老带新', moments: '朋友圈', conversion: '一对一转化',
}

export const SOP_STATUS: Record<string, { label: string; type: 'success' | 'info' | 'warning' }> = {
  running: { label: '运行中', type: 'success' },
  paused: { label: '已暂停', type: 'warning' },
  draft: { label: '草稿', type: 'info' },
}


export function useIsPhone(): { phone: boolean } {
  return { phone: window.matchMedia('(max-width: 768px)').matches }
}
